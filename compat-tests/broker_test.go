package compattests

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/pubg1/pubg1/bench"

	// The broker binary is built in TestMain, where go test's result cache
	// cannot see it. Importing the broker package (and so everything it
	// imports) makes a change there invalidate cached results; a change to
	// cmd/pubg1 alone does not, hence -count=1 in the test command.
	_ "github.com/pubg1/pubg1/broker"
)

const (
	// readyTimeout bounds how long a broker may take to start listening.
	readyTimeout = 30 * time.Second
	// stopTimeout bounds a clean shutdown after SIGTERM before SIGKILL.
	stopTimeout = 15 * time.Second
	// launchAttempts bounds retries when a picked port turns out taken.
	launchAttempts = 5
)

// brokerBin is the pubg1 binary TestMain builds once for every test.
var brokerBin string

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	dir, err := os.MkdirTemp("", "pubg1-compat-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "creating build dir:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	brokerBin = filepath.Join(dir, "pubg1")
	// go test puts its own go first in PATH.
	goBin, err := exec.LookPath("go")
	if err != nil {
		fmt.Fprintln(os.Stderr, "finding the go command:", err)
		return 1
	}
	build := exec.Command(goBin, "build", "-o", brokerBin, "github.com/pubg1/pubg1/cmd/pubg1")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building pubg1: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

// syncBuffer collects a process's output from its copying goroutine while
// tests read it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// brokerProc is one pubg1 broker process owned by a test: a bench.Proc
// whose failures fail the test. Restart brings it back on the same port and
// data directory.
type brokerProc struct {
	t       testing.TB
	dataDir string
	proc    *bench.Proc
}

func newBrokerProc(t testing.TB, addr, dataDir string, flags ...string) *brokerProc {
	return &brokerProc{t: t, dataDir: dataDir, proc: &bench.Proc{
		Binary:    brokerBin,
		Addr:      addr,
		Args:      append([]string{"--log-format", "json", "--data", dataDir}, flags...),
		ReadyLine: "broker ready",
	}}
}

// startBroker starts a broker on a free 127.0.0.1 port with its own data
// directory and waits until it serves. The broker is stopped (and its output
// logged if the test failed) when the test ends.
func startBroker(t testing.TB, extraFlags ...string) *brokerProc {
	t.Helper()
	b := newBrokerProc(t, "", t.TempDir(), extraFlags...)
	t.Cleanup(func() {
		if b.Alive() {
			b.Stop()
		}
		if t.Failed() {
			t.Logf("broker %s output:\n%s", b.Addr(), b.Output())
		}
	})
	var err error
	for range launchAttempts {
		b.proc.Addr = freeAddr(t)
		if err = b.launch(); !errors.Is(err, bench.ErrPortTaken) {
			break
		}
	}
	if err != nil {
		t.Fatalf("starting broker: %v", err)
	}
	return b
}

// freeAddr finds a port nobody listens on right now. Another process may
// take it before the broker binds it; launch reports that and the caller
// picks again.
func freeAddr(t testing.TB) string {
	t.Helper()
	addr, err := bench.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// Addr is the host:port clients connect to.
func (b *brokerProc) Addr() string { return b.proc.Addr }

// Output is everything the broker printed, over all its runs.
func (b *brokerProc) Output() string { return b.proc.Output() }

// launch starts the process and waits until it accepts connections.
func (b *brokerProc) launch() error {
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	return b.proc.Start(ctx)
}

// Alive reports whether the process is running.
func (b *brokerProc) Alive() bool { return b.proc.Alive() }

// Kill stops the broker with SIGKILL, as a crash would, and waits for it.
func (b *brokerProc) Kill() { b.proc.Kill() }

// Pause freezes the broker with SIGSTOP: it keeps its sockets but answers
// nothing. Kill and Stop work on a paused broker.
func (b *brokerProc) Pause() {
	b.t.Helper()
	if err := b.proc.Pause(); err != nil {
		b.t.Error(err)
	}
}

// Resume thaws a paused broker with SIGCONT.
func (b *brokerProc) Resume() {
	b.t.Helper()
	if err := b.proc.Resume(); err != nil {
		b.t.Error(err)
	}
}

// Stop asks the broker to shut down with SIGTERM and fails the test unless
// it exits cleanly within stopTimeout (after which it is killed, once the Go
// runtime has printed every goroutine into the output shown with the
// failure).
func (b *brokerProc) Stop() {
	b.t.Helper()
	if err := b.proc.Shutdown(stopTimeout); err != nil {
		b.t.Errorf("broker %s did not exit cleanly after SIGTERM: %v", b.Addr(), err)
	}
}

// Restart starts the stopped or killed broker again on the same port and
// data directory.
func (b *brokerProc) Restart() {
	b.t.Helper()
	if b.Alive() {
		b.t.Fatal("Restart of a running broker")
	}
	// The port was ours a moment ago; only a stranger grabbing it in
	// between makes this retry, and then only a few times.
	var err error
	for range launchAttempts {
		if err = b.launch(); !errors.Is(err, bench.ErrPortTaken) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil {
		b.t.Fatalf("restarting broker: %v", err)
	}
}

// testContext is a context that ends with the test or after d.
func testContext(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// port returns the numeric port of a host:port address.
func port(t testing.TB, addr string) int32 {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("splitting %q: %v", addr, err)
	}
	n, err := strconv.ParseInt(p, 10, 32)
	if err != nil {
		t.Fatalf("port of %q: %v", addr, err)
	}
	return int32(n)
}
