# alloc_heavy.pl - an allocation-heavy Perl workload with a deterministic
# result, run by run_program.sh with and without libhakmem.so preloaded:
# hashes of strings, arrays grown and spliced, string building (realloc),
# sorting, regular expressions, and buffers of a few megabytes.
use strict;
use warnings;

my %h;
for my $i (1 .. 150000) {
    $h{"key$i"} = ("v" . ($i * 7919 % 10007)) x (1 + $i % 9);
    delete $h{"key" . int($i / 2)} if $i % 3 == 0;
}
my @keys = sort { $h{$a} cmp $h{$b} || $a cmp $b } keys %h;
my $sum = 0;
$sum = ($sum * 31 + length($h{$_})) % 1000000007 for @keys;

my @a;
for my $i (1 .. 100000) {
    push @a, [ $i, "x" x ($i % 300), { n => $i } ];
    splice(@a, $i % 17, 1) if $i % 5 == 0;
}
my $text = "";
$text .= sprintf("%06d:%s;", $_->[0], substr($_->[1], 0, 10)) for @a;
my @words = ($text =~ /(\d+):x{10}/g);

my $big = "";
$big .= chr(65 + $_ % 26) x 100000 for 0 .. 59;   # grows to 6 MB
my $big_sum = unpack("%32C*", $big);
my %count;
$count{$_}++ for split //, substr($big, 0, 500000);

print "hash ", scalar(keys %h), " ", $sum, "\n";
print "array ", scalar(@a), " ", scalar(@words), " ", length($text), "\n";
print "big ", length($big), " ", $big_sum, " ", join(",", map { "$_=$count{$_}" } sort keys %count), "\n";
print "checksum ", unpack("%32C*", $text) , "\n";
