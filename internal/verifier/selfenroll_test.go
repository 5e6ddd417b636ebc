package verifier_test

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kube2fa/kube2fa/api/v1alpha1"
	"github.com/kube2fa/kube2fa/internal/testenv"
	"github.com/kube2fa/kube2fa/internal/verifier"
)

// metricsText is what r serves on /metrics.
func metricsText(t *testing.T, r *replica) string {
	t.Helper()
	res, err := http.Get(r.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = res.Body.Close() }()
	body, _ := io.ReadAll(res.Body)
	return string(body)
}

// Trust on first use is the default, and visible: every self-enrollment is an Event and a metric.
// selfEnrollment.mode AdminOnly turns it off: the verifier creates no enrollment and serves no material,
// and a user confirms the key an administrator handed out.
func TestSelfEnrollmentIsVisibleAndCanBeClosed(t *testing.T) {
	ns, rs := setup(t, spec(v1alpha1.ModeEnforced, v1alpha1.MethodTOTP), 1)
	r := rs[0]
	if res := r.enroll(t, "erin", ""); res.Status != 201 {
		t.Fatalf("enroll: %d %v", res.Status, res.Body)
	}
	waitEvent(t, ns, "a SelfEnrolled Event on erin's enrollment", func(ev eventsv1.Event) bool {
		return ev.Reason == v1alpha1.EventReasonSelfEnrolled && ev.Regarding.Name == ueName("erin")
	})
	if text := metricsText(t, r); !strings.Contains(text, `kube2fa_self_enrollments_total{result="created"} 1`) {
		t.Errorf("no self-enrollment counted:\n%s", text)
	}

	closed := testenv.EditPolicy(t, env.Client, client.ObjectKey{Namespace: ns, Name: "webapp"}, func(s *v1alpha1.TwoFactorPolicySpec) {
		s.SelfEnrollment = &v1alpha1.SelfEnrollmentSettings{Mode: v1alpha1.SelfEnrollmentAdminOnly}
	})
	testenv.Eventually(t, "the replica to see AdminOnly", func() bool { return r.enroll(t, "frank", "").Status == 403 })
	// An administrator's enrollment: pending, its material only in its Secret, confirmed with a first code.
	admin := &v1alpha1.UserEnrollment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "grace"},
		Spec: v1alpha1.UserEnrollmentSpec{PolicyRef: v1alpha1.PolicyReference{Name: closed.Name}, User: "grace"}}
	if err := env.Client.Create(ctx, admin); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, "grace's key", func() bool {
		return call(t, "GET", r.url+"/v1/enrollments/grace", "").Body["state"] == "Pending"
	})
	if res := r.enroll(t, "grace", ""); res.Status != 403 || res.Body["otpauthURI"] != nil {
		t.Fatalf("material served under AdminOnly: %d %v", res.Status, res.Body)
	}
	p, k := secretKey(t, env.Client, ns, "grace") // named by the administrator
	if res := r.confirm(t, "grace", totp(t, p, k, time.Now())); res.Status != 200 {
		t.Fatalf("confirming an administrator's enrollment: %d %v", res.Status, res.Body)
	}
	if got := enrollment(t, ns, "erin"); got.Labels[v1alpha1.LabelSelfEnrolled] != "true" {
		t.Errorf("a self-enrollment is not labelled: %v", got.Labels)
	}
	if text := metricsText(t, r); !strings.Contains(text, `kube2fa_self_enrollments_total{result="closed"}`) {
		t.Errorf("refusals under AdminOnly not counted:\n%s", text)
	}
}

// Self-enrollment cannot fill etcd: a replica creates enrollments at a bounded rate, and a policy has a
// bounded number of unconfirmed ones; refusals are 429 and 503, counted.
func TestSelfEnrollmentIsBounded(t *testing.T) {
	ns, _ := setup(t, spec(v1alpha1.ModeEnforced, v1alpha1.MethodTOTP), 0)
	slow := startReplica(t, env, verifier.Config{Namespace: ns, Policy: "webapp", SelfEnrollmentRate: 0.001, SelfEnrollmentBurst: 2}, nil)
	testenv.Eventually(t, "the verifier to load the policy", func() bool { return slow.Ready() == nil })
	for _, u := range []string{"u1", "u2"} {
		if res := slow.enroll(t, u, ""); res.Status != 201 {
			t.Fatalf("%s: %d %v", u, res.Status, res.Body)
		}
	}
	if res := slow.enroll(t, "u3", ""); res.Status != 429 || res.Header.Get("Retry-After") == "" {
		t.Fatalf("beyond the rate: %d %v", res.Status, res.Body)
	}
	if res := slow.enroll(t, "u1", ""); res.Status != 200 {
		t.Fatalf("resuming a pending enrollment is not a new one: %d %v", res.Status, res.Body)
	}

	capped := startReplica(t, env, verifier.Config{Namespace: ns, Policy: "webapp", MaxPending: 3}, nil)
	// The bound is the manager's count in the policy's status, as this replica's watch shows it.
	counted := func(n int32) func() bool {
		return func() bool {
			p := &v1alpha1.TwoFactorPolicy{}
			return capped.Ready() == nil && capped.Cache.Get(ctx, client.ObjectKey{Namespace: ns, Name: "webapp"}, p) == nil &&
				p.Status.Enrollments != nil && p.Status.Enrollments.SelfEnrolledPending == n
		}
	}
	testenv.Eventually(t, "the verifier to load the policy counting two pending", counted(2))
	if res := capped.enroll(t, "u4", ""); res.Status != 201 {
		t.Fatalf("the third pending: %d %v", res.Status, res.Body)
	}
	testenv.Eventually(t, "the verifier to see three pending counted", counted(3))
	if res := capped.enroll(t, "u5", ""); res.Status != 503 {
		t.Fatalf("a fourth pending: %d %v, want it refused", res.Status, res.Body)
	}
	for r, want := range map[*replica]string{slow: `kube2fa_self_enrollments_total{result="rate_limited"} 1`,
		capped: `kube2fa_self_enrollments_total{result="too_many_pending"}`} {
		if text := metricsText(t, r); !strings.Contains(text, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}
