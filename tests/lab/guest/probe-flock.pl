#!/usr/bin/perl
# The lab's NFSv4 conflict probe (client D): every 0.5 s tries a non-blocking exclusive flock(2)
# of FILE, which another client's writer holds (on NFS the client turns flock into a whole-file
# byte-range lock, so this is a LOCK from a second NFSv4 client). Logs "busy" (refused, as it
# must be), "granted" (a conflicting grant: the holder lost its lock) or "err".
#   probe-flock.pl FILE LOG
use strict;
use warnings;
use Fcntl qw(:flock O_RDWR);
use IO::Handle;
use Time::HiRes qw(time sleep);
use Errno qw(EWOULDBLOCK);

my ($file, $log) = @ARGV;
die "usage: probe-flock.pl FILE LOG\n" unless defined $log;
open(my $lg, '>>', $log) or die "probe: cannot open $log: $!\n";
$lg->autoflush(1);
$SIG{TERM} = sub { printf $lg "%.6f stopped\n", time; exit 0 };
while (1) {
    if (sysopen(my $fh, $file, O_RDWR)) {
        if (flock($fh, LOCK_EX | LOCK_NB)) {
            printf $lg "%.6f granted\n", time;
            flock($fh, LOCK_UN);
        } elsif ($! == EWOULDBLOCK) {
            printf $lg "%.6f busy\n", time;
        } else {
            printf $lg "%.6f err %s\n", time, $!;
        }
        close($fh);
    } else {
        printf $lg "%.6f err open %s\n", time, $!;
    }
    sleep 0.5;
}
