package main

import (
	"bytes"
	"errors"
	"flag"
	"strings"
	"testing"

	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
)

// The verifier runs controller-runtime's caches: unless their logger is set, their messages are lost and,
// 30 seconds after start, controller-runtime prints "log.SetLogger(...) was never called" with a stack trace.
func TestControllerRuntimeLogsGoToTheVerifiersLogger(t *testing.T) {
	var out bytes.Buffer
	setupLogging(zap.New(zap.WriteTo(&out)))
	ctrllog.Log.WithName("cache").Info("Synced the watch caches")
	if !strings.Contains(out.String(), "Synced the watch caches") {
		t.Fatalf("controller-runtime's log message was lost; the verifier's log has: %q", out.String())
	}
}

func TestHelpNamesEveryFlag(t *testing.T) {
	var o options
	fs := flag.NewFlagSet("verifier", flag.ContinueOnError)
	var out bytes.Buffer
	fs.SetOutput(&out)
	o.bind(fs)
	if err := fs.Parse([]string{"--help"}); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("--help: %v", err)
	}
	for _, want := range []string{"Usage: verifier --policy NAME", "-policy", "-namespace", "-listen", "-metrics-listen",
		"-kubeconfig", "-kube-api-qps", "-max-staleness", "-zap-log-level"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("--help does not mention %q", want)
		}
	}
}
