package verifier

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kube2fa/kube2fa/api/v1alpha1"
)

// minClockTolerance is the least offset the guard forgives, whatever the policy: the API server's Date header
// has whole seconds, and a round trip adds its own uncertainty.
const minClockTolerance = 2 * time.Second

// ServerClock measures a replica's clock, the one its decisions use, against the API server's, from the
// Date header of every answer the replica's API client receives (the freshness check alone reads one every
// few seconds). A TOTP code is right or wrong only by the clock: a replica whose clock is off would turn
// every right code into a counted failure and lock users out for a fault that is not theirs.
type ServerClock struct {
	clock clock.PassiveClock

	mu sync.Mutex
	// offset is this clock minus the API server's (positive: this replica runs ahead), within uncertainty.
	offset, uncertainty time.Duration
	measured            bool
}

// NewServerClock measures c against the API server.
func NewServerClock(c clock.PassiveClock) *ServerClock { return &ServerClock{clock: c} }

// Wrap is a rest.Config.WrapTransport that observes the Date of every answer.
func (s *ServerClock) Wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(req *http.Request) (*http.Response, error) {
		sent := s.clock.Now()
		res, err := rt.RoundTrip(req)
		if err == nil {
			if date, perr := http.ParseTime(res.Header.Get("Date")); perr == nil {
				s.observe(sent, s.clock.Now(), date)
			}
		}
		return res, err
	})
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }

// observe records that the API server's clock read date (truncated to the second) at some moment between
// sent and received by this clock.
func (s *ServerClock) observe(sent, received, date time.Time) {
	rtt := max(received.Sub(sent), 0)
	server := date.Add(500 * time.Millisecond) // the middle of the second the header names
	s.mu.Lock()
	defer s.mu.Unlock()
	s.offset = sent.Add(rtt / 2).Sub(server)
	s.uncertainty = rtt/2 + 500*time.Millisecond
	s.measured = true
}

// Offset is the last measured offset of this clock from the API server's (positive: ahead) and whether one
// was measured yet.
func (s *ServerClock) Offset() (time.Duration, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.offset, s.measured
}

// Collector exports the offset as kube2fa_clock_offset_seconds.
func (s *ServerClock) Collector() prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "kube2fa_clock_offset_seconds",
		Help: "This replica's clock minus the API server's, from the Date of its answers (within about a second).",
	}, func() float64 {
		offset, _ := s.Offset()
		return offset.Seconds()
	})
}

// fault explains why this replica's clock cannot be trusted with TOTP codes under policy p: it is further
// from the API server's, beyond all doubt of the measurement, than p's window absorbs (skewSteps periods).
func (s *ServerClock) fault(p v1alpha1.ResolvedPolicy) error {
	s.mu.Lock()
	offset, uncertainty, measured := s.offset, s.uncertainty, s.measured
	s.mu.Unlock()
	tolerance := max(time.Duration(p.TOTP.SkewSteps*p.TOTP.PeriodSeconds)*time.Second, minClockTolerance)
	if !measured || offset.Abs()-uncertainty <= tolerance {
		return nil
	}
	return refuse(ErrClock, "this replica's clock is %v off the API server's, more than the %v its TOTP window absorbs: "+
		"TOTP codes are refused, and counted nowhere, until its clock is fixed", offset.Round(time.Second), tolerance)
}

// clockGuard refuses TOTP decisions while this replica's clock is at fault, and says so in a Warning Event on
// the policy naming the replica, once per fault.
func (v *Verifier) clockGuard(ctx context.Context, p v1alpha1.ResolvedPolicy) error {
	if v.ServerClock == nil {
		return nil
	}
	err := v.ServerClock.fault(p)
	if err == nil {
		v.clockFaulty.Store(false)
		return nil
	}
	if !v.clockFaulty.Swap(true) {
		policy := &v1alpha1.TwoFactorPolicy{}
		if gerr := v.Cache.Get(ctx, client.ObjectKey{Namespace: v.Namespace, Name: v.Policy}, policy); gerr != nil {
			policy.Namespace, policy.Name = v.Namespace, v.Policy
		}
		v.event(policy, corev1.EventTypeWarning, v1alpha1.EventReasonClockSkew, fmt.Sprintf("Verifier replica %s: %v", v.Replica, err))
	}
	return err
}
