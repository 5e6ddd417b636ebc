// Command devcluster is what `make run` starts: the local control plane (etcd, kube-apiserver and
// kube-controller-manager built from source by hack/) with kube2fa's CRDs, the manager binary, the samples,
// and a verifier binary for the sample policy. With USE_EXISTING_CLUSTER=true it uses the cluster of the
// current kubeconfig instead. It runs in the foreground until Ctrl-C, then stops everything it started.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/kube2fa/kube2fa/internal/controlplane"
	"github.com/kube2fa/kube2fa/internal/devcluster"
)

type options struct {
	stateDir, manager, verifier, listen, samples, namespace string
	existing                                                bool
}

func main() {
	root := controlplane.RepoRoot()
	var o options
	flag.StringVar(&o.stateDir, "state-dir", filepath.Join(root, ".run"), "Directory for the local cluster's kubeconfig.")
	flag.StringVar(&o.manager, "manager", filepath.Join(root, "bin", "manager"), "Path of the manager binary.")
	flag.StringVar(&o.verifier, "verifier", filepath.Join(root, "bin", "verifier"), "Path of the verifier binary.")
	flag.StringVar(&o.listen, "verifier-listen", "127.0.0.1:8089", "Address of the verifier's HTTP API.")
	flag.StringVar(&o.samples, "samples", filepath.Join(root, "config", "samples"), "Kustomization applied once the manager runs.")
	flag.StringVar(&o.namespace, "namespace", "default", "Namespace the samples are applied to.")
	flag.BoolVar(&o.existing, "use-existing-cluster", os.Getenv("USE_EXISTING_CLUSTER") == "true",
		"Use the cluster of the current kubeconfig instead of starting a local one (env USE_EXISTING_CLUSTER=true).")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "devcluster:", err)
		os.Exit(1)
	}
}

func run(o options) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	for _, b := range []string{o.manager, o.verifier} {
		if _, err := os.Stat(b); err != nil {
			return fmt.Errorf("binary %s not found: run 'make build'", b)
		}
	}

	var c *devcluster.Cluster
	var err error
	if o.existing {
		fmt.Println("Installing the CRDs into the cluster of the current kubeconfig ...")
		c, err = devcluster.Existing(os.Getenv("KUBECONFIG"), os.Stdout)
	} else {
		fmt.Println("Starting etcd, kube-apiserver and kube-controller-manager ...")
		c, err = devcluster.StartLocal(o.stateDir, os.Stdout)
	}
	if err != nil {
		return err
	}
	defer func() {
		fmt.Println("Stopping ...")
		if err := c.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "devcluster:", err)
		}
	}()

	mgr, err := c.Start("manager", o.manager, "--metrics-bind-address=0", "--health-probe-bind-address=0")
	if err != nil {
		return err
	}
	if out, err := c.Kubectl(ctx, "apply", "-n", o.namespace, "-k", o.samples); err != nil {
		return fmt.Errorf("applying the samples: %w", err)
	} else {
		fmt.Print(out)
	}
	if _, err := c.Kubectl(ctx, "wait", "-n", o.namespace, "--for=condition=Ready", "--timeout=60s", "tfp/webapp"); err != nil {
		return fmt.Errorf("waiting for the sample policy: %w", err)
	}
	ver, err := c.StartVerifier("verifier", o.verifier, "webapp", o.namespace, o.listen)
	if err != nil {
		return err
	}

	kubeconfig := c.Kubeconfig
	if kubeconfig == "" {
		kubeconfig = "(your current kubeconfig)"
	}
	fmt.Printf(`
kube2fa is ready. The verifier for policy webapp listens on http://%[2]s

  export KUBECONFIG=%[1]s
  kubectl get tfp,ue                                     # the admin grid
  curl -s http://%[2]s/v1/enrollments -d '{"user":"bob"}'          # self-enroll: otpauthURI + qrPNG
  curl -s http://%[2]s/v1/enrollments/bob/confirm -d '{"code":"123456"}'   # first code from the app
  curl -s http://%[2]s/v1/verify -d '{"user":"bob","code":"123456"}'       # at every login

The helpdesk's kubectl plugin (built into bin/ by make build):
  export PATH=%[3]s:$PATH
  kubectl 2fa status -n %[4]s                              # the policies: enrolled, pending, locked
  kubectl 2fa enroll alice --policy webapp -n %[4]s        # scan the QR code with your phone
  kubectl 2fa status bob -n %[4]s                          # enrolled? locked? failures, recovery codes left
  kubectl 2fa unlock bob -n %[4]s                          # unlock
  kubectl 2fa reset bob -n %[4]s                           # recovery: his key goes with it

Press Ctrl-C to stop.
`, kubeconfig, o.listen, pluginDir(o.verifier), o.namespace)

	select {
	case <-ctx.Done():
		return nil
	case <-mgr.Done():
		return fmt.Errorf("the manager exited: %w", mgr.Err())
	case <-ver.Done():
		return fmt.Errorf("the verifier exited: %w", ver.Err())
	}
}

// pluginDir is where make build put kubectl-2fa: beside the verifier binary, as an absolute path.
func pluginDir(verifier string) string {
	dir, err := filepath.Abs(filepath.Dir(verifier))
	if err != nil {
		return filepath.Dir(verifier)
	}
	return dir
}
