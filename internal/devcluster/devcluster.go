// Package devcluster runs kube2fa the way a user does, as separate processes: the local control plane (or
// an existing cluster), the manager binary and verifier binaries, with their logs interleaved under a name
// prefix and kept for inspection. `make run` (cmd/devcluster) and the end-to-end tests share it.
package devcluster

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/kube2fa/kube2fa/internal/controlplane"
)

// Cluster is a control plane with kube2fa's CRDs, and the processes started against it.
type Cluster struct {
	// Env is the local control plane; nil when running against an existing cluster.
	Env *controlplane.Env
	// Kubeconfig reaches the cluster as an administrator.
	Kubeconfig string

	out   io.Writer
	mu    sync.Mutex
	procs []*Process
}

// StartLocal starts etcd, kube-apiserver and kube-controller-manager with the CRDs installed. With a
// stateDir, etcd keeps its data in stateDir/etcd across runs and the kubeconfig is written there. Process
// logs go to out (nil: kept only in memory).
func StartLocal(stateDir string, out io.Writer) (*Cluster, error) {
	opts := controlplane.Options{ControllerManager: true}
	if stateDir != "" {
		opts.DataDir = filepath.Join(stateDir, "etcd")
	}
	env, err := controlplane.Start(opts)
	if err != nil {
		return nil, err
	}
	c := &Cluster{Env: env, Kubeconfig: env.Kubeconfig, out: out}
	if stateDir != "" {
		if err := os.MkdirAll(stateDir, 0o755); err != nil {
			return nil, errors.Join(err, env.Stop())
		}
		data, err := os.ReadFile(env.Kubeconfig)
		if err != nil {
			return nil, errors.Join(err, env.Stop())
		}
		c.Kubeconfig = filepath.Join(stateDir, "kubeconfig")
		if err := os.WriteFile(c.Kubeconfig, data, 0o600); err != nil {
			return nil, errors.Join(err, env.Stop())
		}
	}
	return c, nil
}

// Existing uses the cluster of kubeconfig (empty: kubectl's default) and installs the CRDs into it.
func Existing(kubeconfig string, out io.Writer) (*Cluster, error) {
	c := &Cluster{Kubeconfig: kubeconfig, out: out}
	crds := filepath.Join(controlplane.RepoRoot(), "config", "crd", "bases")
	if _, err := c.Kubectl(context.Background(), "apply", "--server-side", "-f", crds); err != nil {
		return nil, fmt.Errorf("installing the CRDs: %w", err)
	}
	return c, nil
}

// Kubectl runs the kubectl binary against the cluster and returns its combined output.
func (c *Cluster) Kubectl(ctx context.Context, args ...string) (string, error) {
	return c.KubectlIn(ctx, "", args...)
}

// KubectlIn is Kubectl with stdin.
func (c *Cluster) KubectlIn(ctx context.Context, stdin string, args ...string) (string, error) {
	if c.Kubeconfig != "" {
		args = append([]string{"--kubeconfig=" + c.Kubeconfig}, args...)
	}
	cmd := exec.CommandContext(ctx, "kubectl", args...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// Start runs a binary against the cluster (with --kubeconfig) as a named process.
func (c *Cluster) Start(name, bin string, args ...string) (*Process, error) {
	return c.StartAs(name, bin, c.Kubeconfig, args...)
}

// StartAs is Start with another identity's kubeconfig (empty: none).
func (c *Cluster) StartAs(name, bin, kubeconfig string, args ...string) (*Process, error) {
	if kubeconfig != "" {
		args = append([]string{"--kubeconfig=" + kubeconfig}, args...)
	}
	p := &Process{Name: name, cmd: exec.Command(bin, args...), done: make(chan struct{})}
	r, w := io.Pipe()
	p.cmd.Stdout, p.cmd.Stderr = w, w
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	go p.copyLogs(r, c.out)
	go func() {
		p.err = p.cmd.Wait()
		_ = w.Close() // ends copyLogs; a pipe's writer closes without error
		close(p.done)
	}()
	c.mu.Lock()
	c.procs = append(c.procs, p)
	c.mu.Unlock()
	return p, nil
}

// StartVerifier runs a verifier for policy in namespace on listen and waits until it is ready.
func (c *Cluster) StartVerifier(name, bin, policy, namespace, listen string, extra ...string) (*Process, error) {
	if ln, err := net.Listen("tcp", listen); err != nil {
		return nil, fmt.Errorf("the address %s of %s is taken: %w", listen, name, err)
	} else {
		_ = ln.Close()
	}
	args := append([]string{"--policy=" + policy, "--namespace=" + namespace, "--listen=" + listen}, extra...)
	p, err := c.Start(name, bin, args...)
	if err != nil {
		return nil, err
	}
	if err := p.WaitHTTP(context.Background(), "http://"+listen+"/readyz", time.Minute); err != nil {
		return nil, errors.Join(err, p.Stop())
	}
	return p, nil
}

// Stop stops every process (newest first) and then the local control plane.
func (c *Cluster) Stop() error {
	c.mu.Lock()
	procs := c.procs
	c.procs = nil
	c.mu.Unlock()
	var errs []error
	for i := len(procs) - 1; i >= 0; i-- {
		errs = append(errs, procs[i].Stop())
	}
	if c.Env != nil {
		errs = append(errs, c.Env.Stop())
	}
	return errors.Join(errs...)
}

// FreeAddr returns a loopback address with a port free at the time of the call.
func FreeAddr() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(fmt.Sprintf("no free loopback port: %v", err))
	}
	defer func() { _ = ln.Close() }()
	return ln.Addr().String()
}

// Process is a binary started by a Cluster.
type Process struct {
	Name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error

	mu   sync.Mutex
	logs bytes.Buffer
}

func (p *Process) copyLogs(r io.Reader, out io.Writer) {
	s := bufio.NewScanner(r)
	s.Buffer(make([]byte, 64<<10), 1<<20)
	for s.Scan() {
		p.mu.Lock()
		p.logs.Write(s.Bytes())
		p.logs.WriteByte('\n')
		p.mu.Unlock()
		if out != nil {
			_, _ = fmt.Fprintf(out, "[%s] %s\n", p.Name, s.Text())
		}
	}
}

// PID is the process ID.
func (p *Process) PID() int { return p.cmd.Process.Pid }

// Logs returns everything the process printed so far.
func (p *Process) Logs() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logs.String()
}

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Err is why the process exited, once Done is closed.
func (p *Process) Err() error { return p.err }

// Stop asks the process to stop (SIGTERM) and waits up to 15s, then kills it.
func (p *Process) Stop() error {
	select {
	case <-p.done:
		return nil
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(15 * time.Second):
		p.Kill()
		return fmt.Errorf("%s did not stop within 15s and was killed", p.Name)
	}
}

// Kill kills the process at once (SIGKILL), as a crash would, and waits for it to be gone.
func (p *Process) Kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

// WaitHTTP waits until url answers 200, failing early if the process exits.
func (p *Process) WaitHTTP(ctx context.Context, url string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		if res, err := http.Get(url); err == nil {
			_ = res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s exited before it was ready: %w", p.Name, p.err)
		case <-ctx.Done():
			return fmt.Errorf("%s was not ready at %s within %v", p.Name, url, timeout)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
