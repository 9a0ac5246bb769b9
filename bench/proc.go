package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// Proc is a broker process started from a pubg1 binary, for benchmarks and
// fault injection.
type Proc struct {
	Binary string
	Args   []string // flags after "serve"
	Addr   string   // client address, also passed as --listen
	// LogTo, if set, receives the process's output as it comes;
	// otherwise it is kept for Output().
	LogTo io.Writer
	// KillWithParent makes the kernel SIGKILL the broker if this process
	// dies first, so no broker outlives its supervisor.
	KillWithParent bool

	mu     sync.Mutex
	cmd    *exec.Cmd
	done   chan struct{}
	output syncBuffer
}

// syncBuffer collects a process's output for error reports.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// FreeAddr returns a loopback address with a port that was free a moment
// ago.
func FreeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("bench: finding a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// Start runs the broker and waits until it accepts connections.
func (p *Proc) Start(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		return errors.New("bench: broker already running")
	}
	args := append([]string{"serve", "--listen", p.Addr}, p.Args...)
	cmd := exec.Command(p.Binary, args...)
	cmd.Stdout, cmd.Stderr = &p.output, &p.output
	if p.LogTo != nil {
		cmd.Stdout, cmd.Stderr = p.LogTo, p.LogTo
	}
	if p.KillWithParent {
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("bench: starting %s: %w", p.Binary, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	p.cmd, p.done = cmd, done
	for {
		c, err := net.DialTimeout("tcp", p.Addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-done:
			p.cmd = nil
			return fmt.Errorf("bench: broker exited during start-up: %s", p.output.String())
		case <-ctx.Done():
			return fmt.Errorf("bench: broker not ready: %w", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// signal sends sig and waits for the process to exit, killing it after
// grace.
func (p *Proc) signal(sig syscall.Signal, grace time.Duration) {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.cmd = nil
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
	case <-time.After(grace):
		_ = cmd.Process.Kill()
		<-done
	}
}

// Stop shuts the broker down with SIGTERM.
func (p *Proc) Stop() { p.signal(syscall.SIGTERM, 30*time.Second) }

// Kill stops the broker with SIGKILL, as a crash would.
func (p *Proc) Kill() { p.signal(syscall.SIGKILL, 30*time.Second) }

// Pid is the running process's ID, 0 when it is not running.
func (p *Proc) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// Exited is closed when the running process exits.
func (p *Proc) Exited() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.done
}

// Output is what the process has printed so far.
func (p *Proc) Output() string { return p.output.String() }
