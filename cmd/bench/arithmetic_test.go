package main

import (
	"maps"
	"math"
	"slices"
	"sync/atomic"
	"testing"
	"time"
)

// The arithmetic whose figures go into the README, checked against values worked out by hand. The bucket
// bounds and ratios are powers of two and their sums, exact in binary, so that results compare exactly.

// fsyncBounds are the upper bounds, in seconds, of the histograms below: 1s, 2s, 4s and +Inf.
var fsyncBounds = []float64{1, 2, 4, math.Inf(1)}

// TestQuantile checks histogram.quantile against Prometheus's histogram_quantile: linear interpolation
// within the bucket the rank falls in, over the observations made between two snapshots only.
func TestQuantile(t *testing.T) {
	none := histogram{}
	tests := []struct {
		name      string
		before, h histogram
		q         float64
		want      time.Duration
	}{
		{
			// Buckets hold 10, 20, 10 and 0 of 40 observations. Rank 0.5*40 = 20 falls in the second
			// bucket (1s, 2s], which holds ranks 10-30: 1s + (2s-1s) * (20-10)/(30-10) = 1.5s.
			name: "interpolates within the bucket the rank falls in",
			h:    histogram{bounds: fsyncBounds, counts: []float64{10, 30, 40, 40}, total: 40}, before: none,
			q: .5, want: 1500 * time.Millisecond,
		},
		{
			// The first bucket starts at 0: rank 0.25*40 = 10 of the 20 in (0, 1s]: 0 + 1s * 10/20 = 0.5s.
			name: "interpolates the first bucket from zero",
			h:    histogram{bounds: fsyncBounds, counts: []float64{20, 30, 40, 40}, total: 40}, before: none,
			q: .25, want: 500 * time.Millisecond,
		},
		{
			// Rank 0.25*40 = 10 is the first bucket's last observation: its upper bound, 1s.
			name: "gives a bucket's upper bound for its last rank",
			h:    histogram{bounds: fsyncBounds, counts: []float64{10, 30, 40, 40}, total: 40}, before: none,
			q: .25, want: time.Second,
		},
		{
			// Between the snapshots: 0, 20, 10 and 0 new observations per bucket (cumulative 0, 20, 30,
			// 30), 30 in all. Rank 0.5*30 = 15 falls in (1s, 2s], which holds ranks 0-20:
			// 1s + 1s * 15/20 = 1.75s. Counting the 10 from before as well would give 1.5s.
			name:   "counts only the observations made between before and h",
			before: histogram{bounds: fsyncBounds, counts: []float64{10, 10, 10, 10}, total: 10},
			h:      histogram{bounds: fsyncBounds, counts: []float64{10, 30, 40, 40}, total: 40},
			q:      .5, want: 1750 * time.Millisecond,
		},
		{
			// 10 of 40 observations exceed 4s. Rank 0.99*40 = 39.6 falls in the +Inf bucket, which has no
			// upper bound to interpolate to: the last finite bound, 4s, as Prometheus answers.
			name: "gives the last finite bound for a rank in the +Inf bucket",
			h:    histogram{bounds: fsyncBounds, counts: []float64{10, 20, 30, 40}, total: 40}, before: none,
			q: .99, want: 4 * time.Second,
		},
		{
			// The same without the +Inf bucket: no bucket reaches rank 39.6, so again the last bound, 4s.
			name: "gives the last bound for a rank beyond the last bucket",
			h:    histogram{bounds: fsyncBounds[:3], counts: []float64{10, 20, 30}, total: 40}, before: none,
			q: .99, want: 4 * time.Second,
		},
		{
			// Nothing was observed between the snapshots: 0, not a division by zero.
			name:   "gives 0 when nothing was observed in between",
			before: histogram{bounds: fsyncBounds, counts: []float64{10, 30, 40, 40}, total: 40},
			h:      histogram{bounds: fsyncBounds, counts: []float64{10, 30, 40, 40}, total: 40},
			q:      .99, want: 0,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.h.quantile(tt.before, tt.q); got != tt.want {
				t.Errorf("quantile(%v) = %v, want %v", tt.q, got, tt.want)
			}
		})
	}
}

// TestPct checks runResult.pct: the latency at index floor(n*p) of the sorted latencies, the last at most.
func TestPct(t *testing.T) {
	oneToTen := millis(1, 2, 3, 4, 5, 6, 7, 8, 9, 10)
	oneToHundred := make([]time.Duration, 100)
	for i := range oneToHundred {
		oneToHundred[i] = time.Duration(i+1) * time.Millisecond
	}
	tests := []struct {
		name      string
		latencies []time.Duration
		p         float64
		want      time.Duration
	}{
		// 10 latencies, 1ms to 10ms: floor(10*0.5) = index 5, the 6th: 6ms.
		{"p50 of ten is the sixth", oneToTen, .5, 6 * time.Millisecond},
		// floor(10*0.95) = floor(9.5) = index 9, the last: 10ms.
		{"p95 of ten is the last", oneToTen, .95, 10 * time.Millisecond},
		// floor(10*0.75) = floor(7.5) = index 7, the 8th: 8ms; the index is rounded down, not to nearest.
		{"p75 of ten is the eighth, the index rounded down", oneToTen, .75, 8 * time.Millisecond},
		// floor(10*0) = index 0, the first: 1ms.
		{"p0 is the first", oneToTen, 0, time.Millisecond},
		// floor(10*1) = index 10, past the end: the last, 10ms.
		{"p100 is the last, not past the end", oneToTen, 1, 10 * time.Millisecond},
		// 100 latencies, 1ms to 100ms: floor(100*0.95) = index 95, the 96th: 96ms.
		{"p95 of a hundred is the 96th", oneToHundred, .95, 96 * time.Millisecond},
		// floor(100*0.99) = index 99, the 100th: 100ms (a nearest-rank p99 would be the 99th).
		{"p99 of a hundred is the 100th", oneToHundred, .99, 100 * time.Millisecond},
		// No latencies at all: 0, not an index out of range.
		{"a run without latencies gives 0", nil, .99, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := (runResult{latencies: tt.latencies}).pct(tt.p); got != tt.want {
				t.Errorf("pct(%v) = %v, want %v", tt.p, got, tt.want)
			}
		})
	}
}

// TestPool checks pool, which makes one result of a load's rounds: the verification rows and their ratios.
func TestPool(t *testing.T) {
	second := time.Second
	rounds := []runResult{
		{decisions: 110, answered: 100, window: 2 * second, latencies: []time.Duration{3, 1}},
		{decisions: 310, answered: 300, window: 2 * second, latencies: []time.Duration{2}},
	}
	for i := range rounds {
		rounds[i].rate = float64(rounds[i].answered) / rounds[i].window.Seconds()
	}
	got := pool(rounds)
	// 400 answers in 4 s: 100/s, not the mean of the rounds' 50/s and 150/s weighed by nothing.
	if got.rate != 100 || got.decisions != 420 || got.answered != 400 || got.window != 4*second {
		t.Errorf("pool = rate %v, %d decisions, %d answered in %v; want 100/s, 420, 400 in 4s", got.rate, got.decisions, got.answered, got.window)
	}
	if !slices.Equal(got.latencies, []time.Duration{1, 2, 3}) {
		t.Errorf("pooled latencies %v, want every round's, sorted: [1 2 3]", got.latencies)
	}
	if rounds[0].latencies[0] != 3 || len(rounds[0].latencies) != 2 {
		t.Errorf("pool changed a round's latencies: %v", rounds[0].latencies)
	}
}

// TestCPUShare checks cpuShare's milliseconds per decision, the figure of the CPU rows.
func TestCPUShare(t *testing.T) {
	tests := []struct {
		name      string
		share     cpuShare
		wantTotal time.Duration
		wantPer   []float64 // per(used[i]) for each process, then per(total)
		wantText  string
	}{
		{
			// 6ms and 2ms over 4 decisions: 1.5 and 0.5 ms each, 8ms in all, 2 ms per decision.
			name:      "shares each process's time and the total over the decisions",
			share:     cpuShare{n: 4, names: []string{procAPIServer, procEtcd}, used: millis(6, 2)},
			wantTotal: 8 * time.Millisecond,
			wantPer:   []float64{1.5, 0.5, 2},
			wantText:  "2.00 ms (kube-apiserver 1.50, etcd 0.50)",
		},
		{
			// 1.5µs counts as its whole microseconds, 1µs: 0.001 ms for one decision.
			name:      "counts whole microseconds",
			share:     cpuShare{n: 1, names: []string{procBench}, used: []time.Duration{1500 * time.Nanosecond}},
			wantTotal: 1500 * time.Nanosecond,
			wantPer:   []float64{0.001, 0.001},
			wantText:  "0.00 ms (bench 0.00)",
		},
		{
			name:      "of no processes is nothing",
			share:     cpuShare{n: 3},
			wantTotal: 0,
			wantPer:   []float64{0},
			wantText:  "0.00 ms ()",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := tt.share
			if got := s.total(); got != tt.wantTotal {
				t.Errorf("total() = %v, want %v", got, tt.wantTotal)
			}
			var per []float64
			for _, d := range append(slices.Clone(s.used), s.total()) {
				per = append(per, s.per(d))
			}
			if !slices.Equal(per, tt.wantPer) {
				t.Errorf("per = %v, want %v", per, tt.wantPer)
			}
			if got := s.String(); got != tt.wantText {
				t.Errorf("String() = %q, want %q", got, tt.wantText)
			}
		})
	}
}

// TestRequestDiff checks diff and writes over the API server's request counters, the figures of the writes
// per enrollment.
func TestRequestDiff(t *testing.T) {
	before := map[string]float64{
		"POST userenrollments":       5,
		"GET userenrollments":        7,
		"PUT secrets":                2,
		"WATCH userenrollments":      1, // gone after: the counter was reset
		"PATCH leases":               9, // lower after: reset too
		"PUT userenrollments/status": 0,
	}
	after := map[string]float64{
		"POST userenrollments":                15,
		"GET userenrollments":                 7,
		"PUT secrets":                         2,
		"PATCH leases":                        4,
		"PUT userenrollments/status":          20,
		"conflict PUT userenrollments/status": 3,
		"DELETE pods":                         1,
		"LIST userenrollments":                9,
	}
	tests := []struct {
		name       string
		after      map[string]float64
		before     map[string]float64
		wantDiff   map[string]float64
		wantWrites float64
	}{
		{
			// Increases: POST 10, PUT status 20 (3 of which refused with a conflict), DELETE 1, LIST 9;
			// GET and PUT secrets did not change, WATCH and PATCH went down. Writes: 10 + 20 + 1 = 31,
			// the conflicts not again, the LIST not at all.
			name:  "keeps the increases and counts the writes among them once",
			after: after, before: before,
			wantDiff: map[string]float64{"POST userenrollments": 10, "PUT userenrollments/status": 20,
				"conflict PUT userenrollments/status": 3, "DELETE pods": 1, "LIST userenrollments": 9},
			wantWrites: 31,
		},
		{
			// A counter new since before counts whole: 1 PATCH.
			name:  "counts a counter that is new since before whole",
			after: map[string]float64{"PATCH leases": 1}, before: map[string]float64{},
			wantDiff: map[string]float64{"PATCH leases": 1}, wantWrites: 1,
		},
		{
			name:  "of the same reading twice is nothing",
			after: after, before: after,
			wantDiff: map[string]float64{}, wantWrites: 0,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := diff(tt.after, tt.before)
			if !maps.Equal(d, tt.wantDiff) {
				t.Errorf("diff = %v, want %v", d, tt.wantDiff)
			}
			if got := writes(d); got != tt.wantWrites {
				t.Errorf("writes = %v, want %v", got, tt.wantWrites)
			}
		})
	}
}

// millis returns the given numbers of milliseconds as durations.
func millis(ms ...int) []time.Duration {
	ds := make([]time.Duration, len(ms))
	for i, m := range ms {
		ds[i] = time.Duration(m) * time.Millisecond
	}
	return ds
}

// A refused request (a ceiling's write refused with a conflict, a verifier's unexpected answer) is cheap: a
// rate that counted it would read higher the more requests fail. drive counts expected answers only.
func TestDriveCountsOnlyExpectedAnswers(t *testing.T) {
	b := &bench{}
	var refusals, accepted atomic.Int64
	refused := b.drive(offered{clients: 2}, 50*time.Millisecond, func(_, _ int) bool {
		refusals.Add(1)
		time.Sleep(time.Millisecond)
		return false
	})
	if refused.rate != 0 || refused.answered != 0 || refused.errors != int(refusals.Load()) || refused.errors == 0 {
		t.Errorf("every request refused: rate %v, %d answered, %d errors of %d requests; want rate 0, 0 answered, all errors",
			refused.rate, refused.answered, refused.errors, refusals.Load())
	}
	half := b.drive(offered{clients: 2}, 50*time.Millisecond, func(_, i int) bool {
		time.Sleep(time.Millisecond)
		if i%2 == 0 {
			accepted.Add(1)
			return true
		}
		return false
	})
	if half.answered == 0 || int64(half.answered) > accepted.Load() || half.rate != float64(half.answered)/0.05 {
		t.Errorf("every other request refused: %d answered, %d accepted, rate %v", half.answered, accepted.Load(), half.rate)
	}
}
