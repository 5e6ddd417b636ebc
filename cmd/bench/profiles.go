package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// profile captures CPU profiles of the API server and of every kube2fa process serving pprof, for the
// given time, into the -profiles directory as <run>.<process>.pprof, and the kube2fa processes' allocations
// over the same time as <run>.<process>.allocs.pprof (what their garbage collection costs comes from); it
// does nothing without -profiles.
// The returned function waits for the profiles to be written.
func (b *bench) profile(run string, d time.Duration) (wait func()) {
	if b.c.profiles == "" {
		return func() {}
	}
	seconds := fmt.Sprint(max(int(d.Seconds()), 1))
	var wg sync.WaitGroup
	save := func(file string, fetch func() ([]byte, error)) {
		wg.Go(func() {
			raw, err := fetch()
			if err == nil {
				err = os.WriteFile(filepath.Join(b.c.profiles, run+"."+file+".pprof"), raw, 0o644)
			}
			if err != nil {
				fmt.Printf("    profiling %s during %s: %v\n", file, run, err)
			}
		})
	}
	save(procAPIServer, func() ([]byte, error) {
		return b.metrics.Get().AbsPath("/debug/pprof/profile").Param("seconds", seconds).DoRaw(context.Background())
	})
	for process, addr := range b.pprof {
		save(process, func() ([]byte, error) { return fetch("http://" + addr + "/debug/pprof/profile?seconds=" + seconds) })
		save(process+".allocs", func() ([]byte, error) { return fetch("http://" + addr + "/debug/pprof/allocs?seconds=" + seconds) })
	}
	return wg.Wait
}

// saveHeapProfile writes process's heap profile into the -profiles directory as <run>.<process>.heap.pprof.
func (b *bench) saveHeapProfile(run, process string) {
	if b.c.profiles == "" {
		return
	}
	raw, err := fetch("http://" + b.pprof[process] + "/debug/pprof/heap")
	if err == nil {
		err = os.WriteFile(filepath.Join(b.c.profiles, run+"."+process+".heap.pprof"), raw, 0o644)
	}
	if err != nil {
		fmt.Printf("    heap profile of %s: %v\n", process, err)
	}
}

// fetch returns the body of a GET of url, which must answer 200.
func fetch(url string) ([]byte, error) {
	res, err := http.Get(url)
	if err != nil {
		return nil, err
	}
	defer func() { _ = res.Body.Close() }()
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, res.Status)
	}
	return io.ReadAll(res.Body)
}
