// Command devcluster is what `make run` starts: the local control plane (etcd, kube-apiserver and
// kube-controller-manager built from source by hack/), kube2fa's CRDs, the manager binary, and the samples.
// It runs in the foreground until Ctrl-C, then stops everything it started.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/kube2fa/kube2fa/internal/testenv"
)

func main() {
	root := testenv.RepoRoot()
	stateDir := flag.String("state-dir", filepath.Join(root, ".run"), "Directory for the kubeconfig and logs.")
	manager := flag.String("manager", filepath.Join(root, "bin", "manager"), "Path of the manager binary.")
	samples := flag.String("samples", filepath.Join(root, "config", "samples"), "Kustomization applied once the manager runs.")
	namespace := flag.String("namespace", "default", "Namespace the samples are applied to.")
	flag.Parse()
	if err := run(*stateDir, *manager, *samples, *namespace); err != nil {
		fmt.Fprintln(os.Stderr, "devcluster:", err)
		os.Exit(1)
	}
}

func run(stateDir, manager, samples, namespace string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if _, err := os.Stat(manager); err != nil {
		return fmt.Errorf("manager binary %s not found: run 'make build'", manager)
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

	mgr := exec.CommandContext(ctx, manager, "--kubeconfig="+kubeconfig,
		"--metrics-bind-address=0", "--health-probe-bind-address=0")
	mgr.Cancel = func() error { return mgr.Process.Signal(syscall.SIGTERM) }
	if err := startPrefixed(mgr, "manager"); err != nil {
		return fmt.Errorf("starting manager: %w", err)
	}
	managerDone := make(chan error, 1)
	go func() { managerDone <- mgr.Wait() }()

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

	fmt.Printf(`
kube2fa is ready.

  export KUBECONFIG=%s
  kubectl get tfp,ue                                   # the admin grid
  kubectl get secret alice-otp -o jsonpath='{.data.otpauthURI}' | base64 -d; echo
  kubectl annotate ue alice twofactor.kube2fa.io/unlock=$(date +%%s) --overwrite   # unlock
  kubectl delete userenrollment alice                  # recovery: her key goes with it

Press Ctrl-C to stop.
`, kubeconfig)

	select {
	case <-ctx.Done():
		<-managerDone // SIGTERM: the manager stops cleanly
		return nil
	case err := <-managerDone:
		return fmt.Errorf("manager exited: %w", err)
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
