package keys

import (
	"regexp"
	"strconv"
)

// Pattern is the regular expression (RE2 syntax, as GitHub's secret
// scanning takes it) that finds keys of format f in text: the prefix,
// then for a checksummed format exactly the random part and checksum in
// base62, else the characters Parse accepts, as many as it allows. Every
// key Parse accepts for f matches it whole; a scanner should also require
// PatternBoundary around it, so that a longer token is not cut to fit.
func (f Format) Pattern() string {
	p := regexp.QuoteMeta(f.Prefix)
	if f.Checksum {
		return p + "[0-9A-Za-z]{" + strconv.Itoa(RandomLen+ChecksumLen) + "}"
	}
	least := max(minImportedLen-len(f.Prefix), 0)
	return p + "[0-9A-Za-z_-]{" + strconv.Itoa(least) + "," + strconv.Itoa(MaxLen-len(f.Prefix)) + "}"
}

// PatternBoundary is what must come before and after a match of Pattern:
// the text's start or end, or a character no key holds.
const PatternBoundary = `\A|\z|[^0-9A-Za-z_-]`

// ChecksumRule says how a checksummed key's last characters are made, for
// a scanner that verifies them before reporting.
const ChecksumRule = "the last 6 characters are the CRC-32 (IEEE) of everything before them, " +
	"written in base62 with the digits 0-9A-Za-z, most significant first, padded with 0"
