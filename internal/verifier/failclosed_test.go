package verifier_test

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kube2fa/kube2fa/api/v1alpha1"
	"github.com/kube2fa/kube2fa/controllers"
	"github.com/kube2fa/kube2fa/internal/testenv"
	"github.com/kube2fa/kube2fa/internal/verifier"
)

// The verifier answers from its caches, which outlive the API server; but no decision that changes state
// is answered before it is recorded, so without an API server nothing is accepted.
func TestFailsClosedWhenTheAPIServerIsGone(t *testing.T) {
	own, err := testenv.Start(testenv.Options{StopTimeout: 2 * time.Second}) // its own: this test stops it
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = own.Stop() })
	ns := own.Namespace(t)
	stopManager := own.StartManager(t, controllers.Options{})
	p := &v1alpha1.TwoFactorPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "webapp"},
		Spec: spec(v1alpha1.ModeEnforced, v1alpha1.MethodTOTP)}
	if err := own.Client.Create(ctx, p); err != nil {
		t.Fatal(err)
	}
	r := startReplica(t, own, verifier.Config{Namespace: ns, Policy: "webapp", MaxStaleness: 2 * time.Second}, nil)
	testenv.Eventually(t, "the verifier to load the policy", func() bool { return r.Ready() == nil })
	if res := r.enroll(t, "alice", ""); res.Status != 201 {
		t.Fatalf("enroll: %d %v", res.Status, res.Body)
	}
	params, k := secretKey(t, own.Client, ns, ueName("alice"))
	if res := r.confirm(t, "alice", totp(t, params, k, time.Now())); res.Status != 200 {
		t.Fatalf("confirm: %d %v", res.Status, res.Body)
	}

	stopManager()           // only the verifier matters from here on
	_ = own.StopAPIServer() // killed if slow to stop gracefully; what matters is that it is gone:
	if err := own.Client.Get(ctx, client.ObjectKeyFromObject(p), &v1alpha1.TwoFactorPolicy{}); err == nil {
		t.Fatal("the API server still answers")
	}
	right := totp(t, params, k, time.Now().Add(30*time.Second))
	for _, code := range []string{right, "000000"} {
		if res := r.verify(t, "alice", code); res.Status != 503 || res.Body["error"] == nil {
			t.Errorf("verify without an API server: %d %v, want 503 with a reason", res.Status, res.Body)
		}
	}
	// Answers that record nothing (a user without an enrollment) come from the cache: they too stop once the
	// replica cannot confirm its policy is current, within its staleness bound.
	testenv.Eventually(t, "answers from the cache to stop", func() bool { return r.verify(t, "nobody", "123456").Status == 503 })
	if r.Ready() == nil {
		t.Error("a replica without an API server is ready")
	}
}
