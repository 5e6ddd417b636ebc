package e2e_test

import (
	"bufio"
	"io"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kube2fa/kube2fa/internal/devcluster"
)

// make run is cmd/devcluster: it must reach its ready message with a working verifier, stop everything
// on Ctrl-C, and find its state again on the next run.
func TestMakeRunServesARoundTripAndKeepsItsState(t *testing.T) {
	state := t.TempDir()
	addr := devcluster.FreeAddr()
	v := verifier{url: "http://" + addr}

	stop := startMakeRun(t, state, addr)
	if res := v.verify(t, "bob", "123456"); res.result() != "enrollment_required" {
		t.Fatalf("the sample policy is Enforced: %v", res)
	}
	bob := v.enroll(t, "bob")
	if res := v.confirm(t, "bob", bob.code(0)); res.Status != 200 {
		t.Fatalf("confirm: %v", res)
	}
	last := bob.code(1)
	if res := v.verify(t, "bob", last); res.Status != 200 || res.result() != "accepted" {
		t.Fatalf("verify: %v", res)
	}
	stop()

	stop = startMakeRun(t, state, addr)
	defer stop()
	res := v.post(t, "/v1/enrollments", map[string]string{"user": "bob"})
	if res.Status != 409 {
		t.Fatalf("after a restart bob should still be enrolled (409 on enroll), got %v", res)
	}
	// His last code is still used up: the replay state survived the restart too.
	if res := v.verify(t, "bob", last); res.Status != 401 || res.result() != "already_used" {
		t.Fatalf("replaying bob's last code after a restart: %v", res)
	}
}

// startMakeRun starts devcluster as `make run` does and waits for its ready message. stop sends Ctrl-C and
// requires a clean exit.
func startMakeRun(t *testing.T, state, addr string) (stop func()) {
	t.Helper()
	cmd := exec.Command(devclusterBin, "--state-dir="+state, "--manager="+managerBin, "--verifier="+verBin,
		"--verifier-listen="+addr)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan struct{})
	var log strings.Builder
	go func() {
		s := bufio.NewScanner(out)
		for s.Scan() {
			log.WriteString(s.Text() + "\n")
			if strings.HasPrefix(s.Text(), "kube2fa is ready") {
				close(ready)
			}
		}
		_, _ = io.Copy(io.Discard, out)
	}()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case <-ready:
	case err := <-exited:
		t.Fatalf("make run exited before it was ready (%v):\n%s", err, log.String())
	case <-time.After(2 * time.Minute):
		_ = cmd.Process.Kill()
		t.Fatalf("make run was not ready within 2 minutes:\n%s", log.String())
	}
	stopped := false
	return func() {
		if stopped {
			return
		}
		stopped = true
		_ = cmd.Process.Signal(syscall.SIGINT)
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("make run did not stop cleanly on Ctrl-C: %v", err)
			}
		case <-time.After(time.Minute):
			_ = cmd.Process.Kill()
			t.Errorf("make run did not stop within a minute of Ctrl-C")
		}
	}
}
