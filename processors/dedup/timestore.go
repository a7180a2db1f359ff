package dedup

import (
	"math"
	"slices"
)

// Units a compact timeStore counts in, coarsest first: each divides the one
// before it, so a store can always move to a finer unit.
var storeUnits = [...]int64{1e9, 1e6, 1e3, 1}

// wideUnit marks a timeStore that keeps its times in full.
const wideUnit = 0

// timeStore is a series' remembered sample times: a sorted set of int64
// nanosecond times, kept compactly.
//
// Compact form (unit > 0, the usual one): offs[i] is (time_i - base) / unit,
// a uint32, with unit one of storeUnits (1s, 1ms, 1us, 1ns) and base <= every
// time: 4 bytes a time instead of 8. A store starts in seconds from its first
// time; a time that is not a whole number of units from base, or lies before
// base, or too far after it for 32 bits, re-encodes the store (finer unit,
// base moved down to the oldest time) when the times then fit, else the
// store turns wide.
//
// Wide form (unit == wideUnit): each time is two offs, the high then the low
// 32 bits of its int64 (8 bytes a time, as before the compact form). A wide
// store turns compact again when dropBelow leaves times that fit, or when it
// empties.
//
// Either way each time is stored exactly: a time is found (a duplicate) only
// when it equals a stored one to the nanosecond.
//
// The zero value is an empty store. Ownership and concurrency: a timeStore
// is its seriesState's, used only under its Dedup's mutex; it is not safe
// for concurrent use.
type timeStore struct {
	offs []uint32 // compact: offsets in units from base; wide: hi, lo pairs
	base int64    // compact: the time of offset 0
	unit int64    // storeUnits member, or wideUnit
}

// len is the number of times stored.
func (s *timeStore) len() int {
	if s.unit == wideUnit {
		return len(s.offs) / 2
	}
	return len(s.offs)
}

// at is the i-th time, ascending.
func (s *timeStore) at(i int) int64 {
	if s.unit == wideUnit {
		return int64(uint64(s.offs[2*i])<<32 | uint64(s.offs[2*i+1]))
	}
	return s.base + int64(s.offs[i])*s.unit
}

// appendTo appends the times, ascending, to dst.
func (s *timeStore) appendTo(dst []int64) []int64 {
	for i, n := 0, s.len(); i < n; i++ {
		dst = append(dst, s.at(i))
	}
	return dst
}

// divUnit is d / u and d % u for u a member of storeUnits (constant
// divisors: no division instruction).
func divUnit(d uint64, u int64) (q, r uint64) {
	switch u {
	case 1e9:
		return d / 1e9, d % 1e9
	case 1e6:
		return d / 1e6, d % 1e6
	case 1e3:
		return d / 1e3, d % 1e3
	}
	return d, 0
}

// encode is t's offset in the compact form, if it has one.
func (s *timeStore) encode(t int64) (uint32, bool) {
	if t < s.base {
		return 0, false
	}
	q, r := divUnit(uint64(t)-uint64(s.base), s.unit) // t >= base: exact in uint64
	if r != 0 || q > math.MaxUint32 {
		return 0, false
	}
	return uint32(q), true
}

// insert records t and reports whether it is new (not stored already).
func (s *timeStore) insert(t int64) bool {
	n := len(s.offs)
	if n == 0 || s.unit == wideUnit {
		return s.insertSlow(t)
	}
	if last := s.base + int64(s.offs[n-1])*s.unit; t > last { // the common case: in order
		if off, ok := s.encode(t); ok {
			if n == cap(s.offs) {
				s.grow(n + 1)
			}
			s.offs = append(s.offs, off)
			return true
		}
	} else if t == last {
		return false // a copy of the newest
	}
	return s.insertSlow(t)
}

func (s *timeStore) insertSlow(t int64) bool {
	if len(s.offs) == 0 { // empty: start compact, in seconds from t
		s.base, s.unit = t, storeUnits[0]
		if cap(s.offs) == 0 {
			s.grow(1)
		}
		s.offs = append(s.offs, 0)
		return true
	}
	if s.unit == wideUnit {
		return s.insertWide(t)
	}
	i, found := s.search(t)
	if found {
		return false
	}
	off, ok := s.encode(t)
	if !ok {
		if !s.refit(t) {
			s.widen()
			return s.insertWide(t)
		}
		off, _ = s.encode(t) // fits now; i is unchanged (same times)
	}
	if len(s.offs) == cap(s.offs) {
		s.grow(len(s.offs) + 1)
	}
	s.offs = slices.Insert(s.offs, i, off)
	return true
}

// search is the compact store's binary search for t: the index of the first
// time >= t and whether it equals t.
func (s *timeStore) search(t int64) (int, bool) {
	if t < s.base {
		return 0, false
	}
	q, r := divUnit(uint64(t)-uint64(s.base), s.unit)
	if q > math.MaxUint32 {
		return len(s.offs), false
	}
	i, found := slices.BinarySearch(s.offs, uint32(q))
	if r != 0 { // t lies strictly between offsets q and q+1
		if found {
			i++
		}
		return i, false
	}
	return i, found
}

// absDiff is |a - b|, exact.
func absDiff(a, b int64) uint64 {
	if a >= b {
		return uint64(a) - uint64(b)
	}
	return uint64(b) - uint64(a)
}

// refit re-encodes the compact store so that t (not stored) fits in it:
// base becomes the oldest time (t included), the unit the coarsest that
// divides every time's distance from it. It reports false, changing
// nothing, when the times would then not fit 32 bits.
func (s *timeStore) refit(t int64) bool {
	n := len(s.offs)
	lo, hi := min(s.at(0), t), max(s.at(n-1), t)
	d := absDiff(t, s.base) // the stored times are whole units from base
	k := slices.IndexFunc(storeUnits[:], func(u int64) bool { return u <= s.unit && d%uint64(u) == 0 })
	u := storeUnits[k] // 1 divides everything
	if q, _ := divUnit(uint64(hi)-uint64(lo), u); q > math.MaxUint32 {
		return false
	}
	for i, off := range s.offs {
		x := s.base + int64(off)*s.unit
		q, _ := divUnit(uint64(x)-uint64(lo), u)
		s.offs[i] = uint32(q)
	}
	s.base, s.unit = lo, u
	return true
}

// widen turns the compact store wide.
func (s *timeStore) widen() {
	n := len(s.offs)
	w := slices.Grow([]uint32(nil), 2*max(cap(s.offs), n+1))[:2*n] // size-class rounded
	for i := n - 1; i >= 0; i-- {
		x := uint64(s.base + int64(s.offs[i])*s.unit)
		w[2*i], w[2*i+1] = uint32(x>>32), uint32(x)
	}
	s.offs, s.base, s.unit = w, 0, wideUnit
}

// insertWide is insert for a wide store.
func (s *timeStore) insertWide(t int64) bool {
	n := len(s.offs) / 2
	i, j := 0, n
	for i < j { // first time >= t
		h := int(uint(i+j) >> 1)
		if s.at(h) < t {
			i = h + 1
		} else {
			j = h
		}
	}
	if i < n && s.at(i) == t {
		return false
	}
	if len(s.offs)+2 > cap(s.offs) {
		s.grow(len(s.offs) + 2)
	}
	x := uint64(t)
	s.offs = slices.Insert(s.offs, 2*i, uint32(x>>32), uint32(x))
	return true
}

// grow makes room for need offs: doubling the slice up to 16 times, then
// by half as many again, rounded up to the allocator's size class (append's
// doubling would leave a series that stopped growing with up to half its
// slice unused, and the window's times are most of the memory).
func (s *timeStore) grow(need int) {
	n := len(s.offs)
	per := 1 // offs per time
	if s.unit == wideUnit && n > 0 {
		per = 2
	}
	times := n / per
	want := max(2*times, 4)
	if times >= 16 {
		want = times + times/2
	}
	t := slices.Grow([]uint32(nil), max(want*per, need))[:n] // size-class rounded
	copy(t, s.offs)
	s.offs = t
}

// dropBelow forgets the times below floor. A wide store whose remaining
// times fit the compact form turns compact; an emptied one starts afresh
// at its next insert.
func (s *timeStore) dropBelow(floor int64) {
	n := s.len()
	i := 0
	if s.unit == wideUnit {
		for i < n && s.at(i) < floor {
			i++ // usually few: the sweep runs each time a bucket goes
		}
		s.offs = s.offs[:copy(s.offs, s.offs[2*i:])]
		s.compactWide()
		return
	}
	if n == 0 || s.at(0) >= floor {
		return
	}
	i, _ = s.search(floor)
	s.offs = s.offs[:copy(s.offs, s.offs[i:])]
}

// compactWide turns a wide store compact when its times fit: base the
// oldest, the coarsest unit dividing every distance from it.
func (s *timeStore) compactWide() {
	n := len(s.offs) / 2
	if n == 0 {
		s.offs, s.base, s.unit = s.offs[:0], 0, wideUnit
		return
	}
	lo := s.at(0)
	if uint64(s.at(n-1))-uint64(lo) > math.MaxUint32*uint64(storeUnits[0]) {
		return
	}
	k := 0
	for i := 1; i < n && k < len(storeUnits)-1; i++ {
		d := uint64(s.at(i)) - uint64(lo)
		for d%uint64(storeUnits[k]) != 0 {
			k++
		}
	}
	u := storeUnits[k]
	if q, _ := divUnit(uint64(s.at(n-1))-uint64(lo), u); q > math.MaxUint32 {
		return
	}
	for i := range n { // in place: offs[i] is written after offs[2i], offs[2i+1] are read
		q, _ := divUnit(uint64(s.at(i))-uint64(lo), u)
		s.offs[i] = uint32(q)
	}
	s.offs, s.base, s.unit = s.offs[:n], lo, u
}
