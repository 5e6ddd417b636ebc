package main

import (
	"bytes"
	"fmt"
	"math"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// histogram is a snapshot of one Prometheus histogram's cumulative buckets (summed over its series).
type histogram struct {
	bounds []float64
	counts []float64
	total  float64
}

// scrapeHistogram reads the histogram name from the Prometheus text at url.
func scrapeHistogram(url, name string) (histogram, error) {
	raw, err := fetch(url)
	if err != nil {
		return histogram{}, err
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(raw))
	if err != nil {
		return histogram{}, err
	}
	var h histogram
	for _, m := range families[name].GetMetric() {
		h.total += float64(m.GetHistogram().GetSampleCount())
		for i, b := range m.GetHistogram().GetBucket() {
			if i == len(h.bounds) {
				h.bounds, h.counts = append(h.bounds, b.GetUpperBound()), append(h.counts, 0)
			}
			h.counts[i] += float64(b.GetCumulativeCount())
		}
	}
	if len(h.bounds) == 0 {
		return h, fmt.Errorf("%s has no histogram %s", url, name)
	}
	return h, nil
}

// quantile of the observations made between before and h, interpolated within buckets as Prometheus's
// histogram_quantile does.
func (h histogram) quantile(before histogram, q float64) time.Duration {
	count := func(i int) float64 {
		if i < len(before.counts) {
			return h.counts[i] - before.counts[i]
		}
		return h.counts[i]
	}
	total := h.total - before.total
	if total == 0 {
		return 0
	}
	rank, lower, below := q*total, 0.0, 0.0
	for i, upper := range h.bounds {
		c := count(i)
		if c < rank {
			lower, below = upper, c
			continue
		}
		if math.IsInf(upper, 1) {
			upper = lower
		}
		return time.Duration((lower + (upper-lower)*(rank-below)/max(c-below, 1)) * float64(time.Second))
	}
	return time.Duration(lower * float64(time.Second)) // beyond the last finite bucket
}

// fsyncs measures etcd's WAL fsync latency, the disk's share of every write, from now until the returned
// function is called; it returns "" when etcd's metrics cannot be read.
func (b *bench) fsyncs() func() string {
	url := b.env.EtcdURL() + "/metrics"
	const name = "etcd_disk_wal_fsync_duration_seconds"
	before, err := scrapeHistogram(url, name)
	return func() string {
		after, err2 := scrapeHistogram(url, name)
		if err != nil || err2 != nil {
			return ""
		}
		return fmt.Sprintf("etcd WAL fsync p50 %s, p99 %s", ms(after.quantile(before, .5)), ms(after.quantile(before, .99)))
	}
}
