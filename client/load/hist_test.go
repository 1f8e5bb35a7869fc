package load

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// Every value lands in a bucket whose top is at most ~3% above it, and
// bucket tops increase: the histogram's whole contract.
func TestBucketBounds(t *testing.T) {
	prev := -1
	for _, v := range []uint64{0, 1, 63, 64, 65, 127, 128, 1000, 1 << 20, 123456789, 1<<40 - 1} {
		i := bucket(v)
		if i < prev {
			t.Fatalf("bucket(%d) = %d goes back from %d", v, i, prev)
		}
		prev = i
		hi := bucketHigh(i)
		if hi < v || float64(hi-v) > float64(v)/subCount+1 {
			t.Fatalf("bucket(%d) = %d has top %d", v, i, hi)
		}
		if i > 0 && bucketHigh(i-1) >= v {
			t.Fatalf("bucket(%d) = %d but bucket %d already reaches %d", v, i, i-1, bucketHigh(i-1))
		}
	}
}

func TestQuantilesMatchSorted(t *testing.T) {
	var h Hist
	vals := make([]time.Duration, 100000)
	for i := range vals {
		vals[i] = time.Duration(rand.ExpFloat64() * float64(200*time.Microsecond))
		h.Record(vals[i])
	}
	slices.Sort(vals)
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999} {
		exact := vals[int(q*float64(len(vals)))-1]
		got := h.Quantile(q)
		if got < exact*97/100 || got > exact*104/100 {
			t.Errorf("p%v = %v, exact %v", q*100, got, exact)
		}
	}
	var m Hist
	m.Merge(&h)
	if m.Count() != h.Count() || m.Quantile(0.99) != h.Quantile(0.99) || m.Max() != vals[len(vals)-1] {
		t.Fatalf("merge lost values")
	}
}
