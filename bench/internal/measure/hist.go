// Package measure holds what the benchmark commands measure with: a latency
// histogram and the machine's CPU time.
package measure

import "math/bits"

// Hist is a log-linear latency histogram in nanoseconds: exact below 128 ns,
// then 64 buckets per power of two (under 1.6% error), up to 2^40 ns.
type Hist struct {
	counts [128 + 34*64]uint64
	total  uint64
}

func bucket(v int64) int {
	if v < 0 {
		v = 0
	}
	u := uint64(v)
	if u < 128 {
		return int(u)
	}
	e := bits.Len64(u) - 7 // u>>e is in [64, 128)
	i := 128 + (e-1)*64 + int(u>>e) - 64
	if i >= len(Hist{}.counts) {
		i = len(Hist{}.counts) - 1
	}
	return i
}

// mid is the middle of bucket i.
func mid(i int) float64 {
	if i < 128 {
		return float64(i)
	}
	e := (i-128)/64 + 1
	m := uint64((i-128)%64 + 64)
	return float64(m<<e) + float64(uint64(1)<<e)/2
}

// Add records v nanoseconds.
func (h *Hist) Add(v int64) {
	h.counts[bucket(v)]++
	h.total++
}

// Merge adds o's records to h.
func (h *Hist) Merge(o *Hist) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.total += o.total
}

// Quantile returns the q-quantile (0 < q <= 1) in nanoseconds.
func (h *Hist) Quantile(q float64) float64 {
	if h.total == 0 {
		return 0
	}
	rank := uint64(q*float64(h.total) + 0.5)
	if rank < 1 {
		rank = 1
	}
	var cum uint64
	for i, c := range h.counts {
		cum += c
		if cum >= rank {
			return mid(i)
		}
	}
	return mid(len(h.counts) - 1)
}
