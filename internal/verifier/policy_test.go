package verifier

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/kube2fa/kube2fa/api/v1alpha1"
	"github.com/kube2fa/kube2fa/internal/render"
)

// A replica resolves the policy it decides by from its watch cache only after a watch event of the policy or
// of its ConfigMap: while nothing changes, a decision reads nothing (a cache read costs a REST mapping and
// deep copies), and the first decision after a change reads, checks and obeys what changed: here a forgery,
// which it refuses until its policy's own ConfigMap is back.
func TestThePolicyIsResolvedAgainOnlyAfterAWatchEvent(t *testing.T) {
	ctx := context.Background()
	v, _, cache := decisionFixture(t)
	reads := 0
	v.Cache = interceptor.NewClient(cache, interceptor.Funcs{
		Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, o client.Object, opts ...client.GetOption) error {
			reads++
			return c.Get(ctx, key, o, opts...)
		},
	})
	events := &atomic.Uint64{}
	v.policyEvents = events
	resolve := func(reading int, trusted bool) {
		t.Helper()
		reads = 0
		p, err := v.resolvedPolicy(ctx)
		switch {
		case trusted && (err != nil || p.Mode != v1alpha1.ModeEnforced):
			t.Fatalf("the policy: %+v, %v; want Enforced", p, err)
		case !trusted && !errors.Is(err, ErrUnavailable):
			t.Fatalf("under a forged ConfigMap: %+v, %v; want unavailable", p, err)
		case reads != reading:
			t.Fatalf("%d cache reads, want %d", reads, reading)
		}
	}
	resolve(2, true) // the ConfigMap and the policy
	resolve(0, true)
	resolve(0, true)

	cm := &corev1.ConfigMap{}
	if err := cache.Get(ctx, client.ObjectKey{Namespace: "ns", Name: render.ConfigMapName("webapp")}, cm); err != nil {
		t.Fatal(err)
	}
	owned := cm.DeepCopy()
	cm.OwnerReferences = nil
	cm.Data["policy.json"] = `{"mode":"Disabled"}`
	if err := cache.Update(ctx, cm); err != nil {
		t.Fatal(err)
	}
	resolve(0, true) // before its watch event arrives, as before the watch brings it
	events.Add(1)
	resolve(2, false)
	resolve(2, false) // a refusal is not remembered: every decision looks again

	owned.ResourceVersion = cm.ResourceVersion
	if err := cache.Update(ctx, owned); err != nil {
		t.Fatal(err)
	}
	events.Add(1)
	resolve(2, true)
	resolve(0, true)
}
