package verifier

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/kube2fa/kube2fa/api/v1alpha1"
)

// When API Priority and Fairness sheds the verifier's write (429), the answer is a 503 with the server's
// Retry-After, counted in kube2fa_api_throttled_total, and the user's wrong code is not recorded: load is
// never a user's failure, and nothing is accepted unrecorded.
func TestAnAPIServerThatShedsLoadGetsA503WithRetryAfter(t *testing.T) {
	v, e, cache := decisionFixture(t)
	writes := 0
	shed := func() error {
		writes++
		return apierrors.NewTooManyRequests("too many requests, please try again later", 3)
	}
	api := fake.NewClientBuilder().WithScheme(cache.Scheme()).WithObjects(e.DeepCopy()).
		WithStatusSubresource(&v1alpha1.UserEnrollment{}).
		WithInterceptorFuncs(interceptor.Funcs{
			Create: func(context.Context, client.WithWatch, client.Object, ...client.CreateOption) error { return shed() },
			Update: func(context.Context, client.WithWatch, client.Object, ...client.UpdateOption) error { return shed() },
		}).Build()
	v.Client, v.Leases = api, crLeases{api, e.Namespace}
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	h := &Handler{V: v, Metrics: m, Log: logr.Discard(), Ready: func() error { return nil }, Gatherer: reg}
	rec := httptest.NewRecorder()
	h.Routes().ServeHTTP(rec, httptest.NewRequest("POST", "/v1/verify", strings.NewReader(`{"user":"alice","code":"000000"}`)))
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") != "3" || writes != 1 {
		t.Fatalf("got %d, Retry-After %q, %d writes: %s", rec.Code, rec.Header().Get("Retry-After"), writes, rec.Body)
	}
	if got := testutil.ToFloat64(m.APIThrottled); got != 1 {
		t.Errorf("kube2fa_api_throttled_total = %v, want 1", got)
	}
	if err := api.Get(context.Background(), client.ObjectKey{Namespace: e.Namespace, Name: stateName(e)}, &coordinationv1.Lease{}); !apierrors.IsNotFound(err) {
		t.Fatalf("the refused decision was recorded: %v", err)
	}
}
