// Package e2e_test runs kube2fa as users run it: the built manager and verifier binaries as separate
// processes against the local control plane (with the real garbage collector), driven over HTTP and with
// the real kubectl binary.
package e2e_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base32"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kube2fa/kube2fa/controllers"
	"github.com/kube2fa/kube2fa/internal/controlplane"
	"github.com/kube2fa/kube2fa/internal/devcluster"
	"github.com/kube2fa/kube2fa/internal/manifests"
	"github.com/kube2fa/kube2fa/internal/testenv"
)

var (
	cluster             *devcluster.Cluster
	managerBin, verBin  string
	devclusterBin       string
	manager             *devcluster.Process
	ctx                 = context.Background()
	errKubectlIsMissing = "kubectl is not on PATH: the end-to-end tests drive kube2fa with it"
)

func TestMain(m *testing.M) {
	if _, err := exec.LookPath("kubectl"); err != nil {
		fmt.Println("e2e: skipped:", errKubectlIsMissing)
		os.Exit(0)
	}
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "kube2fa-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = os.RemoveAll(dir) }()
	managerBin, verBin = filepath.Join(dir, "manager"), filepath.Join(dir, "verifier")
	devclusterBin = filepath.Join(dir, "devcluster")
	// kubectl finds its plugins on PATH: `kubectl 2fa` runs this build of kubectl-2fa.
	pluginBin := filepath.Join(dir, "kubectl-2fa")
	if err := os.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH")); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	for bin, pkg := range map[string]string{managerBin: "./cmd/manager", verBin: "./cmd/verifier", devclusterBin: "./cmd/devcluster",
		pluginBin: "./cmd/kubectl-2fa"} {
		cmd := exec.Command("go", "build", "-o", bin, pkg)
		cmd.Dir = controlplane.RepoRoot()
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: building %s: %v\n%s", pkg, err, out)
			return 1
		}
	}
	if cluster, err = devcluster.StartLocal("", nil); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer func() {
		if err := cluster.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "e2e: stopping:", err)
		}
	}()
	mountCtx, unmount := context.WithCancel(ctx)
	defer unmount()
	if err := installInjection(mountCtx, dir); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	if manager, err = startManager(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	return m.Run()
}

// webhookArgs serve sidecar injection from the manager binary, outside the cluster: on a free port, with
// a certificate valid for localhost, read from the directory its Secret is mounted in.
var webhookArgs []string

// installInjection creates config/default's webhook configuration (calling localhost), the verifier
// ClusterRole and the webhook's certificate Secret (in namespace default, the manager's outside a cluster),
// and mounts that Secret into a directory under dir as the kubelet would.
func installInjection(ctx context.Context, dir string) error {
	out, err := manifests.Build(ctx, "config/default")
	if err != nil {
		return err
	}
	objs, err := manifests.Parse(out)
	if err != nil {
		return err
	}
	port := strings.TrimPrefix(devcluster.FreeAddr(), "127.0.0.1:")
	var secret client.ObjectKey
	for _, o := range objs {
		switch {
		case o.GetKind() == "MutatingWebhookConfiguration":
			manifests.PointWebhooksAt(o, "https://localhost:"+port+controllers.InjectPath)
		case o.GetKind() == "ClusterRole" && o.GetName() == "kube2fa-verifier":
		case o.GetKind() == "Secret":
			o.SetNamespace("default")
			secret = client.ObjectKeyFromObject(o)
		default:
			continue
		}
		if err := cluster.Env.Client.Create(ctx, o); err != nil {
			return fmt.Errorf("creating %s %s: %w", o.GetKind(), o.GetName(), err)
		}
	}
	certDir := filepath.Join(dir, "webhook-certs")
	if err := os.Mkdir(certDir, 0o700); err != nil {
		return err
	}
	testenv.MountSecret(ctx, cluster.Env.Client, secret, certDir)
	webhookArgs = []string{"--webhook-port=" + port, "--webhook-cert-dir=" + certDir, "--webhook-extra-dns-names=localhost",
		"--webhook-cert-secret=" + secret.Name}
	return nil
}

// startManager runs the manager binary, verbosely (so that the logs tests scan say as much as they can),
// and waits for its readiness probe.
func startManager() (*devcluster.Process, error) {
	probe := devcluster.FreeAddr()
	p, err := cluster.Start("manager", managerBin, append([]string{"--zap-log-level=debug", "--metrics-bind-address=0",
		"--health-probe-bind-address=" + probe}, webhookArgs...)...)
	if err != nil {
		return nil, err
	}
	return p, p.WaitHTTP(ctx, "http://"+probe+"/readyz", time.Minute)
}

// verifier is one verifier process and the URL of its API.
type verifier struct {
	*devcluster.Process
	url string
}

func startVerifiers(t *testing.T, ns, policy string, n int) []verifier {
	t.Helper()
	var vs []verifier
	for i := range n {
		addr := devcluster.FreeAddr()
		p, err := cluster.StartVerifier(fmt.Sprintf("verifier-%c", 'a'+i), verBin, policy, ns, addr, "--zap-log-level=debug")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = p.Stop() })
		vs = append(vs, verifier{p, "http://" + addr})
	}
	return vs
}

func kubectl(t *testing.T, args ...string) string {
	t.Helper()
	out, err := cluster.Kubectl(ctx, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func apply(t *testing.T, ns, manifest string, extra ...string) {
	t.Helper()
	if _, err := cluster.KubectlIn(ctx, manifest, append([]string{"apply", "-n", ns, "-f", "-"}, extra...)...); err != nil {
		t.Fatal(err)
	}
}

func namespace(t *testing.T) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "e2e-"}}
	if err := cluster.Env.Client.Create(ctx, ns); err != nil {
		t.Fatal(err)
	}
	return ns.Name
}

func policy(mode, extra string) string {
	return "apiVersion: twofactor.kube2fa.io/v1alpha1\nkind: TwoFactorPolicy\nmetadata:\n  name: webapp\nspec:\n" +
		"  mode: " + mode + "\n  methods: [TOTP]\n" + extra
}

type reply struct {
	Status int
	Header http.Header
	Body   map[string]any
}

func (r reply) String() string { return fmt.Sprintf("%d %v", r.Status, r.Body) }
func (r reply) result() string { s, _ := r.Body["result"].(string); return s }

func (v verifier) post(t *testing.T, path string, body any) reply {
	t.Helper()
	raw, _ := json.Marshal(body)
	res, err := http.Post(v.url+path, "application/json", strings.NewReader(string(raw)))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = res.Body.Close() }()
	data, _ := io.ReadAll(res.Body)
	out := reply{Status: res.StatusCode, Header: res.Header}
	_ = json.Unmarshal(data, &out.Body)
	return out
}

func (v verifier) verify(t *testing.T, user, code string) reply {
	return v.post(t, "/v1/verify", map[string]string{"user": user, "code": code})
}

// state is the enrollment state the replica reports for user: Pending once it has the enrollment's key.
func (v verifier) state(t *testing.T, user string) string {
	t.Helper()
	res, err := http.Get(v.url + "/v1/enrollments/" + url.PathEscape(user))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = res.Body.Close() }()
	var body map[string]any
	_ = json.NewDecoder(res.Body).Decode(&body)
	if _, leaked := body["otpauthURI"]; leaked {
		t.Fatalf("GET /v1/enrollments/%s returned provisioning material", user)
	}
	s, _ := body["state"].(string)
	return s
}

// handOver enrolls user through a and waits until b has the pending enrollment with its key, as it will
// within milliseconds: the user scans the QR code before confirming on whichever replica.
func handOver(t *testing.T, a, b verifier, user string) authenticator {
	t.Helper()
	phone := a.enroll(t, user)
	testenv.Eventually(t, b.Name+" to see "+user+" pending", func() bool { return b.state(t, user) == "Pending" })
	return phone
}

func (v verifier) confirm(t *testing.T, user, code string) reply {
	return v.post(t, "/v1/enrollments/"+url.PathEscape(user)+"/confirm", map[string]string{"code": code})
}

// authenticator is what a user's phone holds after scanning the QR code: this test's own RFC 6238 / 4226
// implementation, fed only by the otpauth:// URI.
type authenticator struct {
	secret  []byte
	b32     string
	newHash func() hash.Hash
	digits  int
	period  int64
}

func scan(t *testing.T, uri string) authenticator {
	t.Helper()
	u, err := url.Parse(uri)
	if err != nil || u.Scheme != "otpauth" || u.Host != "totp" {
		t.Fatalf("not a TOTP otpauth URI: %v", err)
	}
	q := u.Query()
	a := authenticator{b32: q.Get("secret"), digits: 6, period: 30, newHash: sha1.New}
	if a.secret, err = base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(a.b32); err != nil {
		t.Fatalf("secret is not base32: %v", err)
	}
	if d := q.Get("digits"); d != "" {
		a.digits, _ = strconv.Atoi(d)
	}
	if p := q.Get("period"); p != "" {
		a.period, _ = strconv.ParseInt(p, 10, 64)
	}
	switch q.Get("algorithm") {
	case "SHA256":
		a.newHash = sha256.New
	case "SHA512":
		a.newHash = sha512.New
	}
	return a
}

// code is the code shown at now plus steps periods. To replay a code, keep the string: now moves.
func (a authenticator) code(steps int64) string {
	counter := time.Now().Unix()/a.period + steps
	mac := hmac.New(a.newHash, a.secret)
	_ = binary.Write(mac, binary.BigEndian, uint64(counter))
	sum := mac.Sum(nil)
	off := sum[len(sum)-1] & 0x0f
	bin := binary.BigEndian.Uint32(sum[off:off+4]) & 0x7fffffff
	mod := uint32(1)
	for range a.digits {
		mod *= 10
	}
	return fmt.Sprintf("%0*d", a.digits, bin%mod)
}

// enroll self-enrolls user through v and returns the authenticator set up from the answer.
func (v verifier) enroll(t *testing.T, user string) authenticator {
	t.Helper()
	res := v.post(t, "/v1/enrollments", map[string]string{"user": user})
	if res.Status != 201 || res.Body["state"] != "Pending" {
		t.Fatalf("self-enrolling %s: %v", user, res)
	}
	return scan(t, res.Body["otpauthURI"].(string))
}

// assertNoKeyMaterial scans everything an operator or attacker might read besides the Secrets: the
// manager's and verifiers' logs, the Events and every object's status in ns.
func assertNoKeyMaterial(t *testing.T, ns string, keys []authenticator, vs ...verifier) {
	t.Helper()
	places := map[string]string{
		"manager logs": manager.Logs(),
		"events":       kubectl(t, "get", "events", "-n", ns, "-o", "json"),
		"objects":      kubectl(t, "get", "tfp,ue,cm", "-n", ns, "-o", "json"),
	}
	for _, v := range vs {
		places[v.Name+" logs"] = v.Logs()
	}
	for _, k := range keys {
		for where, text := range places {
			if strings.Contains(text, k.b32) || strings.Contains(strings.ToLower(text), strings.ToLower(k.b32)) {
				t.Errorf("key material found in %s", where)
			}
		}
	}
}
