package verifier_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/kube2fa/kube2fa/api/v1alpha1"
	"github.com/kube2fa/kube2fa/controllers"
	"github.com/kube2fa/kube2fa/internal/controlplane"
	userenrollment "github.com/kube2fa/kube2fa/internal/enrollment"
	"github.com/kube2fa/kube2fa/internal/otp"
	"github.com/kube2fa/kube2fa/internal/render"
	"github.com/kube2fa/kube2fa/internal/scheme"
	"github.com/kube2fa/kube2fa/internal/testenv"
	"github.com/kube2fa/kube2fa/internal/verifier"
)

var env *testenv.Env

func TestMain(m *testing.M) { testenv.Main(m, testenv.Options{}, &env) }

var ctx = context.Background()

// replica is one verifier instance with its own watch caches, served over HTTP as in production.
type replica struct {
	*verifier.Running
	url string
	reg *prometheus.Registry
}

// startVerifier starts a replica as a user that holds nothing but the verifier Role of config/rbac, bound
// in ns: every test thereby proves that Role is enough.
func startVerifier(t *testing.T, e *testenv.Env, ns, policy string) *replica {
	t.Helper()
	return startReplica(t, e, verifier.Config{Namespace: ns, Policy: policy}, nil)
}

// startReplica is startVerifier with the rest of cfg (a clock, a staleness bound) and, when via is not nil,
// the verifier's API server connections through via.
func startReplica(t *testing.T, e *testenv.Env, cfg verifier.Config, via *partition) *replica {
	t.Helper()
	cfg.Rest, cfg.Scheme = verifierUser(t, e, cfg.Namespace, cfg.Policy), scheme.Scheme
	if via != nil {
		cfg.Rest.Host = "https://" + via.Addr()
	}
	c, cancel := context.WithCancel(ctx)
	t.Cleanup(cancel)
	running, err := verifier.Start(c, cfg)
	if err != nil {
		t.Fatalf("starting verifier: %v", err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(running.ServerClock.Collector())
	h := &verifier.Handler{V: running.Verifier, Metrics: verifier.NewMetrics(reg), Log: logr.Discard(), Ready: running.Ready, Gatherer: reg}
	srv := httptest.NewServer(h.Routes())
	t.Cleanup(srv.Close)
	return &replica{Running: running, url: srv.URL, reg: reg}
}

// verifierUser is a user bound in ns to the verifier Role of config/rbac, restricted by name to policy and
// its ConfigMap as config/samples/app-sidecar restricts it.
func verifierUser(t *testing.T, e *testenv.Env, ns, policy string) *rest.Config {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(controlplane.RepoRoot(), "config", "rbac", "verifier", "role.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	role := &rbacv1.Role{}
	if err := yaml.Unmarshal(raw, role); err != nil {
		t.Fatal(err)
	}
	role.Namespace, role.Name = ns, role.Name+"-"+policy
	for i, rule := range role.Rules {
		switch {
		case slices.Equal(rule.Resources, []string{"configmaps"}):
			role.Rules[i].ResourceNames = []string{render.ConfigMapName(policy)}
		case slices.Equal(rule.Resources, []string{"twofactorpolicies"}):
			role.Rules[i].ResourceNames = []string{policy}
		}
	}
	user := "verifier-" + policy + "-" + ns
	binding := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: user},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}},
	}
	for _, o := range []client.Object{role, binding} {
		if err := e.Client.Create(ctx, o); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
	cfg, err := e.UserConfig(user)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// setup starts the manager and n verifier replicas for a new policy in a fresh namespace.
func setup(t *testing.T, spec v1alpha1.TwoFactorPolicySpec, n int) (string, []*replica) {
	t.Helper()
	ns := env.Namespace(t)
	env.StartManager(t, controllers.Options{MaxConcurrentReconciles: 4})
	p := &v1alpha1.TwoFactorPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "webapp"}, Spec: spec}
	if err := env.Client.Create(ctx, p); err != nil {
		t.Fatal(err)
	}
	var rs []*replica
	for range n {
		r := startVerifier(t, env, ns, "webapp")
		testenv.Eventually(t, "the verifier to load the policy", func() bool { return r.Ready() == nil })
		rs = append(rs, r)
	}
	return ns, rs
}

func spec(mode v1alpha1.Mode, methods ...v1alpha1.Method) v1alpha1.TwoFactorPolicySpec {
	return v1alpha1.TwoFactorPolicySpec{Mode: mode, Methods: methods}
}

type response struct {
	Status int
	Header http.Header
	Body   map[string]any
}

func (r response) result() string { s, _ := r.Body["result"].(string); return s }

func call(t *testing.T, method, url, body string) response {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewBufferString(body))
	if err != nil {
		t.Fatal(err)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer func() { _ = res.Body.Close() }()
	raw, _ := io.ReadAll(res.Body)
	out := response{Status: res.StatusCode, Header: res.Header}
	_ = json.Unmarshal(raw, &out.Body)
	return out
}

func (r *replica) verify(t *testing.T, user, code string) response {
	return call(t, "POST", r.url+"/v1/verify", fmt.Sprintf(`{"user":%q,"code":%q}`, user, code))
}

func (r *replica) confirm(t *testing.T, user, code string) response {
	return call(t, "POST", r.url+"/v1/enrollments/"+url.PathEscape(user)+"/confirm", fmt.Sprintf(`{"code":%q}`, code))
}

func (r *replica) enroll(t *testing.T, user, method string) response {
	return call(t, "POST", r.url+"/v1/enrollments", fmt.Sprintf(`{"user":%q,"method":%q}`, user, method))
}

// waitEvent waits for an Event in ns that match accepts, and returns it.
func waitEvent(t *testing.T, ns, what string, match func(ev eventsv1.Event) bool) eventsv1.Event {
	t.Helper()
	var found eventsv1.Event
	testenv.EventuallyErr(t, what, func() (bool, error) {
		var list eventsv1.EventList
		err := env.Client.List(ctx, &list, client.InNamespace(ns))
		i := slices.IndexFunc(list.Items, match)
		if i >= 0 {
			found = list.Items[i]
		}
		return i >= 0, err
	})
	return found
}

// ueName is the name self-enrollment gives user's enrollment under the tests' policy, webapp.
func ueName(user string) string { return userenrollment.Name("webapp", user) }

// key reads a self-enrolled user's key and parameters the way an authenticator app gets them.
func key(t *testing.T, ns, user string) (otp.Params, []byte) {
	t.Helper()
	return secretKey(t, env.Client, ns, ueName(user))
}

// secretKey reads the key and parameters of the enrollment named name through c.
func secretKey(t *testing.T, c client.Client, ns, name string) (otp.Params, []byte) {
	t.Helper()
	s := &corev1.Secret{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: render.SecretName(name)}, s); err != nil {
		t.Fatal(err)
	}
	p, k, err := render.ParseOTPSecret(s)
	if err != nil {
		t.Fatal(err)
	}
	return p, k
}

// totp is the code an authenticator app shows at time at.
func totp(t *testing.T, p otp.Params, k []byte, at time.Time) string {
	t.Helper()
	c, err := otp.Code(k, p.Algorithm, p.Digits, uint64(at.Unix())/uint64(p.PeriodSeconds))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func hotp(t *testing.T, p otp.Params, k []byte, counter uint64) string {
	t.Helper()
	c, err := otp.Code(k, p.Algorithm, p.Digits, counter)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// enrollment reads a self-enrolled user's enrollment from the API server.
func enrollment(t *testing.T, ns, user string) *v1alpha1.UserEnrollment {
	t.Helper()
	e := &v1alpha1.UserEnrollment{}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: ueName(user)}, e); err != nil {
		t.Fatal(err)
	}
	return e
}

// state reads a self-enrolled user's verification state from its Lease (a fresh one when there is none).
func state(t *testing.T, ns, user string) v1alpha1.VerificationState {
	t.Helper()
	e := enrollment(t, ns, user)
	l := &coordinationv1.Lease{}
	err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: render.StateLeaseName("webapp", user)}, l)
	if apierrors.IsNotFound(err) {
		return userenrollment.StateOf(nil, e.Status.SecretUID)
	}
	if err != nil {
		t.Fatal(err)
	}
	st, err := render.ParseState(l, e)
	if err != nil {
		t.Fatal(err)
	}
	return userenrollment.StateOf(st, e.Status.SecretUID)
}

// enrolled self-enrolls user through r and confirms with the current code (TOTP) or the first (HOTP); it
// returns the key.
func enrolled(t *testing.T, r *replica, ns, user string) (otp.Params, []byte) {
	t.Helper()
	if res := r.enroll(t, user, ""); res.Status != 201 {
		t.Fatalf("enroll %s: %d %v", user, res.Status, res.Body)
	}
	p, k := key(t, ns, user)
	var code string
	if p.Method == v1alpha1.MethodHOTP {
		code = hotp(t, p, k, 0)
	} else {
		code = totp(t, p, k, time.Now())
	}
	if res := r.confirm(t, user, code); res.Status != 200 {
		t.Fatalf("confirm %s: %d %v", user, res.Status, res.Body)
	}
	return p, k
}

// partition is a TCP proxy to the API server that a test can cut, as a network partition would: every
// connection through it is closed, and new ones are refused until it heals.
type partition struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	cut    bool
	conns  map[net.Conn]bool
}

func newPartition(t *testing.T, target string) *partition {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &partition{ln: ln, target: target, conns: map[net.Conn]bool{}}
	t.Cleanup(func() { _ = ln.Close(); p.Cut() })
	go p.serve()
	return p
}

// Addr is where clients connect instead of the API server.
func (p *partition) Addr() string { return p.ln.Addr().String() }

func (p *partition) serve() {
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		out, err := net.Dial("tcp", p.target)
		p.mu.Lock()
		if err != nil || p.cut {
			p.mu.Unlock()
			_ = in.Close()
			if out != nil {
				_ = out.Close()
			}
			continue
		}
		p.conns[in], p.conns[out] = true, true
		p.mu.Unlock()
		go func() { _, _ = io.Copy(out, in); _ = out.Close() }()
		go func() { _, _ = io.Copy(in, out); _ = in.Close() }()
	}
}

// Cut closes every connection and refuses new ones.
func (p *partition) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	for c := range p.conns {
		_ = c.Close()
	}
	clear(p.conns)
}

// Heal lets connections through again.
func (p *partition) Heal() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = false
}
