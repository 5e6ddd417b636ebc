package verifier_test

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kube2fa/kube2fa/api/v1alpha1"
	"github.com/kube2fa/kube2fa/internal/render"
	"github.com/kube2fa/kube2fa/internal/testenv"
)

// One user under two policies of one namespace is two enrollments, and a name someone else took does not
// shut a user out: before, alice enrolled under "admin" got 409 from "webapp" for ever, and a user literally
// named like another's derived name took it.
func TestSelfEnrollmentNamesNeverCollide(t *testing.T) {
	ns, rs := setup(t, spec(v1alpha1.ModeEnforced, v1alpha1.MethodTOTP), 1)
	r := rs[0]
	admin := &v1alpha1.TwoFactorPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "admin"},
		Spec: spec(v1alpha1.ModeEnforced, v1alpha1.MethodTOTP)}
	if err := env.Client.Create(ctx, admin); err != nil {
		t.Fatal(err)
	}
	other := startVerifier(t, env, ns, "admin")
	testenv.Eventually(t, "the admin verifier to load its policy", func() bool { return other.Ready() == nil })
	if res := other.enroll(t, "alice", ""); res.Status != 201 {
		t.Fatalf("alice under admin: %d %v", res.Status, res.Body)
	}
	enrolled(t, r, ns, "alice") // under webapp too

	// An administrator named an enrollment of bob exactly as carol's would be derived.
	squat := &v1alpha1.UserEnrollment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: ueName("carol")},
		Spec: v1alpha1.UserEnrollmentSpec{PolicyRef: v1alpha1.PolicyReference{Name: "webapp"}, User: "bob"}}
	if err := env.Client.Create(ctx, squat); err != nil {
		t.Fatal(err)
	}
	if res := r.enroll(t, "carol", ""); res.Status != 201 {
		t.Fatalf("carol, whose name bob's enrollment holds: %d %v", res.Status, res.Body)
	}
	var list v1alpha1.UserEnrollmentList
	if err := env.Client.List(ctx, &list, client.InNamespace(ns), client.MatchingFields{"spec.user": "carol"}); err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 1 || list.Items[0].Name == squat.Name || list.Items[0].Spec.PolicyRef.Name != "webapp" ||
		list.Items[0].Labels[v1alpha1.LabelSelfEnrolled] != "true" {
		t.Fatalf("carol's enrollments: %v", list.Items)
	}
	if got := call(t, "GET", r.url+"/v1/enrollments/carol", ""); got.Body["state"] != "Pending" {
		t.Fatalf("carol: %v", got.Body)
	}
}

// A user of 200 four-byte characters (within the CRD's 256) has a provisioning URI too long for a QR code:
// the manager provisions the key without one and self-enrollment answers with the URI alone (the manager
// used to fail for ever, and the user got 503 after the provisioning timeout).
func TestAUserTooLongForAQRCodeStillEnrolls(t *testing.T) {
	ns, rs := setup(t, spec(v1alpha1.ModeEnforced, v1alpha1.MethodTOTP), 1)
	user := strings.Repeat("😀", 200)
	res := rs[0].enroll(t, user, "")
	if res.Status != 201 || res.Body["otpauthURI"] == nil || res.Body["qrPNG"] != nil {
		t.Fatalf("enroll: %d, URI %v, QR code %v", res.Status, res.Body["otpauthURI"] != nil, res.Body["qrPNG"] != nil)
	}
	waitEvent(t, ns, "a NoQRCode Event", func(ev eventsv1.Event) bool { return ev.Reason == v1alpha1.EventReasonNoQRCode })
	p, k := key(t, ns, user)
	if res := rs[0].confirm(t, user, totp(t, p, k, time.Now())); res.Status != 200 {
		t.Fatalf("confirm: %d %v", res.Status, res.Body)
	}
}

// An enrollment being deleted (a foreground deletion waits for its Secret) is no enrollment to answer for:
// self-enrollment used to hand out the key that was going away with it.
func TestSelfEnrollmentNeverAnswersForAnEnrollmentBeingDeleted(t *testing.T) {
	ns, rs := setup(t, spec(v1alpha1.ModeEnforced, v1alpha1.MethodTOTP), 1)
	r := rs[0]
	if res := r.enroll(t, "dave", ""); res.Status != 201 {
		t.Fatalf("enroll: %d %v", res.Status, res.Body)
	}
	e := enrollment(t, ns, "dave")
	e.Finalizers = append(e.Finalizers, "test.kube2fa.io/hold")
	if err := env.Client.Update(ctx, e); err != nil {
		t.Fatal(err)
	}
	if err := env.Client.Delete(ctx, e); err != nil {
		t.Fatal(err)
	}
	var res response
	testenv.Eventually(t, "the replica to refuse while the old enrollment is being deleted", func() bool {
		res = r.enroll(t, "dave", "") // answered from what the replica remembers, until its watch says otherwise
		return res.Status == 503
	})
	if res.Body["otpauthURI"] != nil {
		t.Fatalf("enroll while the old enrollment is being deleted: %d %v", res.Status, res.Body)
	}
	e = enrollment(t, ns, "dave")
	e.Finalizers = nil
	if err := env.Client.Update(ctx, e); err != nil {
		t.Fatal(err)
	}
	// The garbage collector (not running here) takes the old key with it.
	if err := env.Client.Delete(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: render.SecretName(e.Name)}}); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, "dave to enroll afresh", func() bool { return r.enroll(t, "dave", "").Status == 201 })
}
