#!/usr/bin/perl
# Scenario 10's lock holders (clients C and D): one child process per holder, each the issue's
# classic loop
#     exec 7<>/data/testfile-HOLDER; flock -x 7; while date | dd conv=fsync >&7; do sleep 1; done
# done without forking: open FILE read-write (created if missing, offset 0, as `7<>`), a blocking
# whole-file flock(2) (an NLM lock on an NFSv3 mount), then every second write the date line at
# the descriptor's offset and fsync it (dd conv=fsync); the first failed write or fsync ends the
# loop (dd's failure ends the while loop): "err" in the log and exit 1. Each successful write is
# logged with a timestamp to the holder's LOG ("EPOCH ok N"), in the VM's control directory, so
# the host sees when each holder stops and resumes. SIGTERM: "stopped N" and exit 0.
# The bare shell loop would fork date and dd every second for each of the 60 holders: on 1-vCPU
# TCG clients that alone is about a second of CPU per second, enough to delay writes by itself.
#   holders.pl PIDFILE FILE LOG [FILE LOG]...
use strict;
use warnings;
use Fcntl qw(:flock O_RDWR O_CREAT);
use IO::Handle;
use POSIX qw(strftime);
use Time::HiRes qw(time sleep);

my $pidfile = shift @ARGV;
die "usage: holders.pl PIDFILE FILE LOG [FILE LOG]...\n" unless defined $pidfile && @ARGV >= 2 && @ARGV % 2 == 0;
my @kids;
while (@ARGV) {
    my ($file, $log) = splice(@ARGV, 0, 2);
    my $pid = fork();
    die "holders: fork: $!\n" unless defined $pid;
    if ($pid == 0) { hold($file, $log); exit 0 }
    push @kids, $pid;
}
open(my $pf, '>', $pidfile) or die "holders: $pidfile: $!\n";
print $pf "$_\n" for @kids;
close($pf);
# The parent waits; SIGTERM to it is passed on to every holder.
$SIG{TERM} = sub { kill 'TERM', @kids; };
1 while wait() != -1;
exit 0;

sub hold {
    my ($file, $log) = @_;
    open(my $lg, '>>', $log) or die "holder: cannot open $log: $!\n";
    $lg->autoflush(1);
    my $n = 0;
    $SIG{TERM} = sub { printf $lg "%.6f stopped %d\n", time, $n; exit 0 };
    my $fh;
    unless (sysopen($fh, $file, O_RDWR | O_CREAT)) {
        printf $lg "%.6f err open %s\n", time, $!;
        exit 1;
    }
    unless (flock($fh, LOCK_EX)) {
        printf $lg "%.6f err flock %s\n", time, $!;
        exit 1;
    }
    printf $lg "%.6f locked\n", time;
    while (1) {
        my $rec = strftime("%a %b %e %H:%M:%S %Z %Y", localtime) . "\n";
        my $w = syswrite($fh, $rec);
        if (defined $w && $w == length($rec) && $fh->sync) {
            $n++;
            printf $lg "%.6f ok %d\n", time, $n;
        } else {
            printf $lg "%.6f err %d %s\n", time, $n + 1, $!;
            exit 1;
        }
        sleep 1;
    }
}
