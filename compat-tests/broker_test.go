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
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

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

// syncBuffer collects a broker's output from its copying goroutine while
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

// since returns the output written after the first n bytes.
func (b *syncBuffer) since(n int) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf.Bytes()[n:])
}

func (b *syncBuffer) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Len()
}

// brokerProc is one pubg1 broker process owned by a test. Restart brings it
// back on the same port and data directory.
type brokerProc struct {
	t       testing.TB
	addr    string
	dataDir string
	flags   []string
	out     *syncBuffer // every run's stdout and stderr

	cmd     *exec.Cmd
	done    chan struct{} // closed once cmd has exited and waitErr is set
	waitErr error
}

var errPortTaken = errors.New("listen port already in use")

// startBroker starts a broker on a free 127.0.0.1 port with its own data
// directory and waits until it serves. The broker is stopped (and its output
// logged if the test failed) when the test ends.
func startBroker(t testing.TB, extraFlags ...string) *brokerProc {
	t.Helper()
	b := &brokerProc{t: t, dataDir: t.TempDir(), flags: extraFlags, out: &syncBuffer{}}
	t.Cleanup(func() {
		if b.Alive() {
			b.Stop()
		}
		if t.Failed() {
			t.Logf("broker %s output:\n%s", b.addr, b.out.String())
		}
	})
	var err error
	for range launchAttempts {
		b.addr = freeAddr(t)
		if err = b.launch(); !errors.Is(err, errPortTaken) {
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
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("finding a free port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// Addr is the host:port clients connect to.
func (b *brokerProc) Addr() string { return b.addr }

// launch starts the process and waits until it accepts connections.
func (b *brokerProc) launch() error {
	args := append([]string{"serve", "--log-format", "json", "--listen", b.addr, "--data", b.dataDir}, b.flags...)
	start := b.out.Len()
	fmt.Fprintf(b.out, "=== pubg1 %s\n", strings.Join(args, " "))
	cmd := exec.Command(brokerBin, args...)
	cmd.Stdout, cmd.Stderr = b.out, b.out
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("running %s: %w", brokerBin, err)
	}
	b.cmd, b.done, b.waitErr = cmd, make(chan struct{}), nil
	go func(done chan struct{}) {
		b.waitErr = cmd.Wait()
		close(done)
	}(b.done)

	// Ready means this run logged that it is ready and the port accepts:
	// the log line alone does not show the socket is reachable, and a
	// connect alone could reach some other process that took the port.
	deadline := time.Now().Add(readyTimeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-b.done:
			out := b.out.since(start)
			if strings.Contains(out, "address already in use") {
				return fmt.Errorf("%w: %s", errPortTaken, b.addr)
			}
			return fmt.Errorf("broker exited before it was ready (%v):\n%s", b.waitErr, out)
		case <-tick.C:
		}
		if strings.Contains(b.out.since(start), "broker ready") {
			if c, err := net.DialTimeout("tcp", b.addr, time.Second); err == nil {
				c.Close()
				return nil
			}
		}
		if time.Now().After(deadline) {
			b.signal(syscall.SIGKILL)
			<-b.done
			return fmt.Errorf("broker not ready on %s after %v", b.addr, readyTimeout)
		}
	}
}

// Alive reports whether the process is running.
func (b *brokerProc) Alive() bool {
	if b.done == nil {
		return false
	}
	select {
	case <-b.done:
		return false
	default:
		return true
	}
}

func (b *brokerProc) signal(sig syscall.Signal) {
	if err := b.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		b.t.Errorf("sending %v to broker: %v", sig, err)
	}
}

// Kill stops the broker with SIGKILL, as a crash would, and waits for it.
func (b *brokerProc) Kill() {
	b.t.Helper()
	b.signal(syscall.SIGKILL)
	select {
	case <-b.done:
	case <-time.After(stopTimeout):
		b.t.Fatalf("broker still running %v after SIGKILL", stopTimeout)
	}
}

// Pause freezes the broker with SIGSTOP: it keeps its sockets but answers
// nothing. Kill and Stop work on a paused broker.
func (b *brokerProc) Pause() {
	b.t.Helper()
	b.signal(syscall.SIGSTOP)
}

// Stop asks the broker to shut down with SIGTERM and fails the test unless
// it exits cleanly; after stopTimeout it is killed.
func (b *brokerProc) Stop() {
	b.t.Helper()
	b.signal(syscall.SIGTERM)
	b.signal(syscall.SIGCONT) // in case it is paused
	select {
	case <-b.done:
		if b.waitErr != nil {
			b.t.Errorf("broker did not exit cleanly after SIGTERM: %v", b.waitErr)
		}
	case <-time.After(stopTimeout):
		b.t.Errorf("broker still running %v after SIGTERM; killing it", stopTimeout)
		// SIGQUIT makes the Go runtime print every goroutine into the
		// broker's output (shown with the failure) before it exits.
		b.signal(syscall.SIGQUIT)
		select {
		case <-b.done:
		case <-time.After(5 * time.Second):
			b.Kill()
		}
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
		if err = b.launch(); !errors.Is(err, errPortTaken) {
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
