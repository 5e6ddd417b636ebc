// Command devcluster is what `make run` starts: the local control plane (etcd, kube-apiserver and
// kube-controller-manager built from source by hack/), kube2fa's CRDs, the manager binary, the samples,
// and a verifier binary for the sample policy.
// It runs in the foreground until Ctrl-C, then stops everything it started.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/kube2fa/kube2fa/internal/testenv"
)

func main() {
	root := testenv.RepoRoot()
	stateDir := flag.String("state-dir", filepath.Join(root, ".run"), "Directory for the kubeconfig and logs.")
	manager := flag.String("manager", filepath.Join(root, "bin", "manager"), "Path of the manager binary.")
	verifierBin := flag.String("verifier", filepath.Join(root, "bin", "verifier"), "Path of the verifier binary.")
	listen := flag.String("verifier-listen", "127.0.0.1:8089", "Address of the verifier's HTTP API.")
	samples := flag.String("samples", filepath.Join(root, "config", "samples"), "Kustomization applied once the manager runs.")
	namespace := flag.String("namespace", "default", "Namespace the samples are applied to.")
	flag.Parse()
	if err := run(*stateDir, *manager, *verifierBin, *listen, *samples, *namespace); err != nil {
		fmt.Fprintln(os.Stderr, "devcluster:", err)
		os.Exit(1)
	}
}

func run(stateDir, manager, verifierBin, listen, samples, namespace string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	for _, b := range []string{manager, verifierBin} {
		if _, err := os.Stat(b); err != nil {
			return fmt.Errorf("binary %s not found: run 'make build'", b)
		}
	}
	if ln, err := net.Listen("tcp", listen); err != nil {
		return fmt.Errorf("the verifier's address %s is taken (set --verifier-listen): %w", listen, err)
	} else {
		ln.Close()
	}
	if err := os.MkdirAll(stateDir, 0o755); err != nil {
		return err
	}

	fmt.Println("Starting etcd, kube-apiserver and kube-controller-manager ...")
	env, err := testenv.Start(testenv.Options{ControllerManager: true})
	if err != nil {
		return err
	}
	defer func() {
		fmt.Println("Stopping the local control plane ...")
		if err := env.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "devcluster: stopping control plane:", err)
		}
	}()
	kubeconfig := filepath.Join(stateDir, "kubeconfig")
	data, err := os.ReadFile(env.Kubeconfig)
	if err != nil {
		return err
	}
	if err := os.WriteFile(kubeconfig, data, 0o600); err != nil {
		return err
	}

	exited := make(chan error, 2)
	start := func(name string, args ...string) error {
		cmd := exec.CommandContext(ctx, args[0], args[1:]...)
		cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
		if err := startPrefixed(cmd, name); err != nil {
			return fmt.Errorf("starting %s: %w", name, err)
		}
		go func() { exited <- fmt.Errorf("%s exited: %w", name, cmd.Wait()) }()
		return nil
	}
	if err := start("manager", manager, "--kubeconfig="+kubeconfig,
		"--metrics-bind-address=0", "--health-probe-bind-address=0"); err != nil {
		return err
	}

	kubectl := func(args ...string) error {
		cmd := exec.CommandContext(ctx, "kubectl", append([]string{"--kubeconfig=" + kubeconfig}, args...)...)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		return cmd.Run()
	}
	if err := kubectl("apply", "-n", namespace, "-k", samples); err != nil {
		return fmt.Errorf("applying samples: %w", err)
	}
	if err := kubectl("wait", "-n", namespace, "--for=condition=Ready", "--timeout=60s", "tfp", "--all"); err != nil {
		return fmt.Errorf("waiting for the sample policy: %w", err)
	}
	if err := start("verifier", verifierBin, "--kubeconfig="+kubeconfig, "--namespace="+namespace,
		"--policy=webapp", "--listen="+listen); err != nil {
		return err
	}
	if err := waitReady(ctx, "http://"+listen+"/readyz", exited); err != nil {
		return err
	}

	fmt.Printf(`
kube2fa is ready. The verifier for policy webapp listens on http://%[2]s

  export KUBECONFIG=%[1]s
  kubectl get tfp,ue                                     # the admin grid
  curl -s http://%[2]s/v1/enrollments -d '{"user":"bob"}'          # self-enroll: otpauthURI + qrPNG
  curl -s http://%[2]s/v1/enrollments/bob/confirm -d '{"code":"123456"}'   # first code from the app
  curl -s http://%[2]s/v1/verify -d '{"user":"bob","code":"123456"}'       # at every login
  kubectl annotate ue bob twofactor.kube2fa.io/unlock=$(date +%%s) --overwrite   # unlock
  kubectl delete userenrollment bob                      # recovery: his key goes with it

Press Ctrl-C to stop.
`, kubeconfig, listen)

	select {
	case <-ctx.Done():
		// SIGTERM went to both; wait for them to stop cleanly.
		<-exited
		<-exited
		return nil
	case err := <-exited:
		return err
	}
}

// waitReady polls a readiness URL until it answers 200, a process exits, or a minute passes.
func waitReady(ctx context.Context, url string, exited <-chan error) error {
	deadline := time.After(time.Minute)
	for {
		if res, err := http.Get(url); err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case err := <-exited:
			return err
		case <-deadline:
			return fmt.Errorf("%s did not become ready within a minute", url)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// startPrefixed starts cmd with each line of its output prefixed by its name, so logs interleave readably.
func startPrefixed(cmd *exec.Cmd, name string) error {
	r, w := io.Pipe()
	cmd.Stdout, cmd.Stderr = w, w
	go func() {
		s := bufio.NewScanner(r)
		for s.Scan() {
			fmt.Printf("[%s] %s\n", name, s.Text())
		}
	}()
	return cmd.Start()
}
