package verifier

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
)

// A request whose reads hang (an API server that accepts connections and never answers) ends at the
// handler's deadline with a 503: it used to wait for ever, and every such request kept a goroutine.
func TestARequestEndsAtItsDeadline(t *testing.T) {
	hung := fake.NewClientBuilder().WithInterceptorFuncs(interceptor.Funcs{
		Get: func(ctx context.Context, _ client.WithWatch, _ client.ObjectKey, _ client.Object, _ ...client.GetOption) error {
			<-ctx.Done()
			return ctx.Err()
		},
	}).Build()
	reg := prometheus.NewRegistry()
	h := &Handler{V: &Verifier{Namespace: "ns", Policy: "webapp", Cache: hung, Client: hung, Clock: clock.RealClock{}},
		Metrics: NewMetrics(reg), Log: logr.Discard(), Ready: func() error { return nil }, Gatherer: reg,
		Timeout: 100 * time.Millisecond}
	srv := httptest.NewServer(h.Routes())
	defer srv.Close()
	c := &http.Client{Timeout: 5 * time.Second}
	res, err := c.Post(srv.URL+"/v1/verify", "application/json", strings.NewReader(`{"user":"alice","code":"123456"}`))
	if err != nil {
		t.Fatalf("the request did not end by itself: %v", err)
	}
	defer func() { _ = res.Body.Close() }()
	if res.StatusCode != http.StatusServiceUnavailable || res.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("got %d %s, want a JSON 503", res.StatusCode, res.Header.Get("Content-Type"))
	}
}
