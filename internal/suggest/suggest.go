// Package suggest finds the known name a misspelt one was probably meant to
// be, for "did you mean ...?" hints in configuration errors.
package suggest

import "strings"

// Closest returns the candidate that word most plausibly misspells, or ""
// when none is close. Matching ignores case. A candidate that word is a
// prefix of (or that is a prefix of word), for words of 4 or more letters,
// wins outright; otherwise the candidate at the smallest edit distance
// (insertions, deletions, substitutions and adjacent transpositions) wins if
// that distance is at most max(2, len(word)/3) and less than len(word). Ties
// go to the candidate that sorts first, so hints are deterministic.
func Closest(word string, candidates []string) string {
	lw := strings.ToLower(word)
	if len(lw) >= 4 {
		best := ""
		for _, c := range candidates {
			lc := strings.ToLower(c)
			if (strings.HasPrefix(lc, lw) || strings.HasPrefix(lw, lc)) && (best == "" || c < best) {
				best = c
			}
		}
		if best != "" {
			return best
		}
	}
	best, bestD := "", 0
	for _, c := range candidates {
		d := Distance(lw, strings.ToLower(c))
		if best == "" || d < bestD || (d == bestD && c < best) {
			best, bestD = c, d
		}
	}
	if best == "" || bestD > max(2, len(lw)/3) || bestD >= len(lw) {
		return ""
	}
	return best
}

// Distance is the optimal-string-alignment distance between a and b:
// insertions, deletions, substitutions and adjacent transpositions each cost
// one. Strings longer than 64 bytes are not compared (the longer length is
// returned), which keeps hostile input cheap.
func Distance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return max(len(a), len(b))
	}
	// Three rows: two back are needed for transpositions.
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}
