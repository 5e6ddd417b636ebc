package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	coordinationclient "k8s.io/client-go/kubernetes/typed/coordination/v1"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kube2fa/kube2fa/internal/devcluster"
	"github.com/kube2fa/kube2fa/internal/scheme"
)

// procHop is the hop ceiling's forwarder.
const procHop = "hop"

// The hop ceiling is a state-shaped Lease's update behind an HTTP hop: the load posts each request to a
// forwarder, a process of its own beside it (this benchmark's binary, started with -forward-listen), which
// parses the request as the verifier would, makes the one guarded write that the state-shaped ceiling
// makes of the user's Lease (its enrollment as controller, the state annotation), and answers. It decides
// nothing. It is the least that a process beside the application, recording each decision in the Lease a
// decision writes, does per decision with the libraries the verifier uses (net/http, client-go): the floor
// of a verifier's rate on this machine, whatever it decides.

// forward serves the hop ceiling's forwarder on listen for the Leases in namespace ns, until it fails.
func forward(kubeconfig, ns, listen string) error {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return err
	}
	cfg.QPS, cfg.Burst = -1, 0 // as the verifier runs here (--kube-api-qps=-1)
	enrollments, err := client.New(cfg, client.Options{Scheme: scheme.Scheme})
	if err != nil {
		return err
	}
	cfg.ContentType, cfg.AcceptContentTypes = runtime.ContentTypeProtobuf, runtime.ContentTypeProtobuf
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	f := &forwarder{ns: ns, enrollments: enrollments, leases: cs.CoordinationV1().Leases(ns), held: map[string]*ceilingLease{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	mux.HandleFunc("POST /v1/verify", f.verify)
	srv := &http.Server{Addr: listen, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	return srv.ListenAndServe()
}

// forwarder holds what it last wrote of each user's Lease in namespace ns, as the state-shaped ceiling's
// clients do; it reads a user's enrollment once, for the Lease's owner.
type forwarder struct {
	ns          string
	enrollments client.Reader
	leases      coordinationclient.LeaseInterface
	mu          sync.Mutex
	held        map[string]*ceilingLease
}

// verify records a decision for the request's user, as the state-shaped ceiling does, and answers as the
// verifier answers an accepted code. The load sends no two requests for one user at once.
func (f *forwarder) verify(w http.ResponseWriter, r *http.Request) {
	var req struct {
		User string `json:"user"`
		Code string `json:"code"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4<<10)).Decode(&req); err != nil || req.User == "" {
		http.Error(w, `{"error":"a user is required"}`, http.StatusBadRequest)
		return
	}
	f.mu.Lock()
	l := f.held[req.User]
	f.mu.Unlock()
	if l == nil {
		var err error
		if l, err = ceilingLeaseOf(r.Context(), f.enrollments, f.leases, f.ns, req.User, stateShaped, procHop); err != nil {
			http.Error(w, fmt.Sprintf(`{"error":%q}`, err), http.StatusServiceUnavailable)
			return
		}
		f.mu.Lock()
		f.held[req.User] = l
		f.mu.Unlock()
	}
	if err := l.succeed(time.Now()); err != nil {
		http.Error(w, fmt.Sprintf(`{"error":%q}`, err), http.StatusInternalServerError)
		return
	}
	updated, err := f.leases.Update(r.Context(), l.Lease, metav1.UpdateOptions{})
	if err != nil {
		http.Error(w, fmt.Sprintf(`{"error":%q}`, err), http.StatusServiceUnavailable)
		return
	}
	l.Lease = updated
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write([]byte(`{"result":"accepted"}`))
}

// runningHop is the hop ceiling's forwarder, running.
type runningHop struct {
	*devcluster.Process
	url string
}

// startHop starts the hop ceiling's forwarder for the Leases in ns, meters it, and waits until it serves.
func (b *bench) startHop(ctx context.Context, ns string) (runningHop, error) {
	self, err := os.Executable()
	if err != nil {
		return runningHop{}, err
	}
	addr := devcluster.FreeAddr()
	p, err := b.cluster.StartAs(procHop, self, "", "-forward-listen="+addr, "-forward-namespace="+ns,
		"-forward-kubeconfig="+b.cluster.Kubeconfig)
	if err != nil {
		return runningHop{}, err
	}
	if err := p.WaitHTTP(ctx, "http://"+addr+"/readyz", time.Minute); err != nil {
		return runningHop{}, errors.Join(err, p.Stop())
	}
	b.procs[procHop] = p.PID()
	if b.asCluster {
		if err := pin([]int{workerCPU}, p.PID()); err != nil {
			return runningHop{}, errors.Join(err, p.Stop())
		}
	}
	return runningHop{Process: p, url: "http://" + addr}, nil
}

// stopHop stops the forwarder and no longer meters it.
func (b *bench) stopHop(h runningHop) error {
	delete(b.procs, procHop)
	return h.Stop()
}

// hopLoad: the users, split over o's clients, each request a user's next code posted to the forwarder at
// url, as verifierLoad posts it to a verifier. Its writes are its own (PUT leases), not the verifier's.
func (b *bench) hopLoad(run string, users []*user, url string, o offered) *load {
	l := httpLoad(run, users, o, func(hc *http.Client, u *user, _, _ int, unexpected *answers) bool {
		return hopOnce(hc, url, u, unexpected)
	})
	l.own = "PUT leases"
	return l
}

// hopOnce posts user u's next code to the forwarder at url, as verifyOnce posts it to a verifier, and
// reports whether it was written; it notes any other answer.
func hopOnce(hc *http.Client, url string, u *user, unexpected *answers) bool {
	return post(hc, url+"/v1/verify", u, u.code(), http.StatusOK, unexpected)
}

// warmHop has the forwarder write every user's Lease once, unmeasured, creating the Leases: as warm does
// for a verifier, and as the other ceilings create theirs before they are measured.
func (b *bench) warmHop(users []*user, url string) error {
	return b.warmWith(users, func(hc *http.Client, u *user, unexpected *answers) error {
		if !hopOnce(hc, url, u, unexpected) {
			return fmt.Errorf("warming the hop ceiling's forwarder up: an unexpected answer for %s", u.name)
		}
		return nil
	})
}
