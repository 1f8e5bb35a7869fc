package load

import (
	"math/bits"
	"time"
)

// Hist is a latency histogram in the style of HdrHistogram: buckets grow
// geometrically (a new power of two every subCount buckets) and each power
// of two is split linearly into subCount buckets, so every recorded value is
// known to within 1/subCount (about 3%) whatever its size, in a fixed
// 9 KiB. Recording is an index computation and an increment: no
// allocation, no lock (each connection keeps its own and they are merged).
type Hist struct {
	counts [histBuckets]uint64
	n      uint64
	sum    time.Duration
	min    time.Duration
	max    time.Duration
}

const (
	subBits  = 5
	subCount = 1 << subBits // linear buckets per power of two
	// maxShift bounds the range: values up to 2^(maxShift+subBits+1) ns,
	// about 18 minutes, land in their own bucket; longer ones in the last.
	maxShift    = 34
	histBuckets = 2*subCount + maxShift*subCount
)

// bucket maps a value in nanoseconds to its bucket. Values below
// 2*subCount get one bucket each; above, a value with bit length k is
// shifted right until it has subBits+1 bits, and its top bits pick the
// bucket within its power of two.
func bucket(v uint64) int {
	if v < 2*subCount {
		return int(v)
	}
	shift := bits.Len64(v) - (subBits + 1)
	if shift > maxShift {
		return histBuckets - 1
	}
	return 2*subCount + (shift-1)*subCount + int(v>>uint(shift)) - subCount
}

// bucketHigh is the largest value that maps to bucket i.
func bucketHigh(i int) uint64 {
	if i < 2*subCount {
		return uint64(i)
	}
	shift := uint((i-2*subCount)/subCount + 1)
	top := uint64((i-2*subCount)%subCount + subCount)
	return (top+1)<<shift - 1
}

// Record adds one latency.
func (h *Hist) Record(d time.Duration) {
	if d < 0 {
		d = 0
	}
	h.counts[bucket(uint64(d))]++
	if h.n == 0 || d < h.min {
		h.min = d
	}
	if d > h.max {
		h.max = d
	}
	h.n++
	h.sum += d
}

// Merge adds o's values to h.
func (h *Hist) Merge(o *Hist) {
	if o.n == 0 {
		return
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	if h.n == 0 || o.min < h.min {
		h.min = o.min
	}
	h.max = max(h.max, o.max)
	h.n += o.n
	h.sum += o.sum
}

// Count is how many values were recorded.
func (h *Hist) Count() uint64 { return h.n }

// Max is the largest value recorded.
func (h *Hist) Max() time.Duration { return h.max }

// Mean is the average value recorded.
func (h *Hist) Mean() time.Duration {
	if h.n == 0 {
		return 0
	}
	return h.sum / time.Duration(h.n)
}

// Quantile is the value below which a fraction q (0..1) of the recorded
// values fall, as the top of the bucket that holds it (never above the
// largest value recorded), so it errs high by at most one bucket's width.
func (h *Hist) Quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(q*float64(h.n) + 0.5)
	rank = min(max(rank, 1), h.n)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return min(time.Duration(bucketHigh(i)), h.max)
		}
	}
	return h.max
}
