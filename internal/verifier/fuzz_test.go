package verifier

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kube2fa/kube2fa/api/v1alpha1"
	"github.com/kube2fa/kube2fa/internal/render"
)

// FuzzRequests: whatever a caller sends to the code endpoints, the answer is never a 5xx while state can be
// read and recorded, and a 400 never changes the enrollment. The state lives in fake clients, so that the
// fuzzer runs without a control plane. Longer run:
// go test -run '^$' -fuzz FuzzRequests -fuzztime 1m ./internal/verifier
func FuzzRequests(f *testing.F) {
	for _, s := range []string{`{"user":"alice","code":"123456"}`, `{"user":"bob","USER":"alice","code":"000000"}`,
		`{"user":"alice","code":"000000","user":"alice"}`, "{\"user\":\"al\xffice\",\"code\":\"1\"}", `{"user":"alice"}`,
		`{"code":"000000"}`, `null`, `[]`, `{"user":"alice","code":"1"} x`, `{"user":"\u202ealice","code":"1"}`} {
		f.Add("/v1/verify", s)
		f.Add("/v1/enrollments/alice/confirm", s)
		f.Add("/v1/enrollments/alice/recovery-codes", s)
	}
	for _, s := range []string{`{"user":"alice","recoveryCode":"7K2M-9QXD-4HTB-R8WN"}`, `{"user":"alice","recoveryCode":"x"}`,
		`{"user":"alice","code":"123456","recoveryCode":"7K2M-9QXD-4HTB-R8WN"}`, `{"user":"alice","recoveryCode":""}`} {
		f.Add("/v1/verify", s)
	}
	f.Add("/v1/enrollments", `{"user":"alice","method":"SMS"}`)
	v, e, _ := decisionFixture(f)
	key := client.ObjectKeyFromObject(e)
	secret := &corev1.Secret{}
	if err := v.Cache.Get(context.Background(), client.ObjectKey{Namespace: e.Namespace, Name: render.SecretName(e.Name)}, secret); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, path, body string) {
		if !strings.HasPrefix(path, "/v1/") {
			return
		}
		api := fakeAPI(v.Cache.(client.WithWatch).Scheme()).WithObjects(e.DeepCopy()).Build()
		before := &v1alpha1.UserEnrollment{}
		if err := api.Get(context.Background(), key, before); err != nil {
			t.Fatal(err)
		}
		vv := &Verifier{Namespace: v.Namespace, Policy: v.Policy, Cache: v.Cache, Client: api, Clock: v.Clock,
			Leases: crLeases{api, e.Namespace}, ProvisionTimeout: 1, dir: knowing(t, e, secret)}
		reg := prometheus.NewRegistry()
		h := &Handler{V: vv, Metrics: NewMetrics(reg), Log: logr.Discard(), Ready: func() error { return nil }, Gatherer: reg}
		req, err := http.NewRequest("POST", "http://verifier"+path, strings.NewReader(body))
		if err != nil {
			return
		}
		rec := httptest.NewRecorder()
		h.Routes().ServeHTTP(rec, req)
		// Self-enrollment's 503 is the manager's key not coming (there is no manager here).
		if rec.Code >= 500 && path != "/v1/enrollments" || rec.Code > 503 {
			t.Fatalf("POST %s %q: %d %s", path, body, rec.Code, rec.Body)
		}
		after := &v1alpha1.UserEnrollment{}
		if err := api.Get(context.Background(), key, after); err != nil {
			t.Fatal(err)
		}
		if rec.Code == http.StatusBadRequest && after.ResourceVersion != before.ResourceVersion {
			t.Fatalf("POST %s %q: a 400 changed the enrollment", path, body)
		}
		err = api.Get(context.Background(), client.ObjectKey{Namespace: e.Namespace, Name: stateName(e)}, &coordinationv1.Lease{})
		if rec.Code == http.StatusBadRequest && !apierrors.IsNotFound(err) {
			t.Fatalf("POST %s %q: a 400 recorded state (%v)", path, body, err)
		}
	})
}
