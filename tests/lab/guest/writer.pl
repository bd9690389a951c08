#!/usr/bin/perl
# The lab's lock-protected appender (client C): takes a whole-file lock with flock(2) (an NLM
# lock on an NFSv3 mount), then appends one 9-byte record ("%08d\n", numbered from 1) and
# fsyncs it every 0.2 s. Each acknowledged record goes to LOG with a timestamp, so the host sees
# exactly when writes stop and resume across a failover.   writer.pl FILE LOG
use strict;
use warnings;
use Fcntl qw(:flock O_WRONLY O_APPEND O_CREAT);
use IO::Handle;
use Time::HiRes qw(time sleep);

my ($file, $log) = @ARGV;
die "usage: writer.pl FILE LOG\n" unless defined $log;
open(my $lg, '>>', $log) or die "writer: cannot open $log: $!\n";
$lg->autoflush(1);
sysopen(my $fh, $file, O_WRONLY | O_APPEND | O_CREAT) or die "writer: cannot open $file: $!\n";
flock($fh, LOCK_EX) or die "writer: flock $file: $!\n";
my $i = int((-s $file) / 9);
printf $lg "%.6f locked %d\n", time, $i;
$SIG{TERM} = sub { printf $lg "%.6f stopped %d\n", time, $i; exit 0 };
while (1) {
    my $rec = sprintf("%08d\n", $i + 1);
    my $n = syswrite($fh, $rec);
    if (defined $n && $n == length($rec) && $fh->sync) {
        $i++;
        printf $lg "%.6f ok %d\n", time, $i;
    } else {
        printf $lg "%.6f err %d %s\n", time, $i + 1, $!;
    }
    sleep 0.2;
}
