package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Proc is a broker process started from a pubg1 binary, for benchmarks,
// fault injection and the tests that drive broker processes. Start may be
// called again once the process has exited, to restart it with the same
// flags, port and data directory.
type Proc struct {
	Binary string
	Args   []string // flags after "serve"
	Addr   string   // client address, also passed as --listen
	// LogTo, if set, receives the process's output as it comes;
	// otherwise it is kept for Output().
	LogTo io.Writer
	// Prefix, if set, is a command and its arguments that run the broker
	// binary (e.g. "ip netns exec NS"); it must exec the binary, so that
	// the process Kill and Pause signal is the broker itself.
	Prefix []string
	// KillWithParent makes the kernel SIGKILL the broker if this process
	// dies first, so no broker outlives its supervisor.
	KillWithParent bool
	// ReadyLine, if set, must appear in the output of the current run
	// before Start counts the broker as ready: a successful connect alone
	// could have reached another process that took the port. It needs
	// the output kept (LogTo nil) and a log level that prints the line.
	ReadyLine string

	mu     sync.Mutex
	run    *run // the last started process
	output syncBuffer
}

// run is one start of the process.
type run struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once cmd has exited and err is set
	err  error
}

func (r *run) exited() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

// ErrPortTaken (wrapped) is returned by Start when another process holds
// the listen address; the caller may pick another and try again.
var ErrPortTaken = errors.New("bench: listen port already in use")

// ErrShutdownTimeout (wrapped) is returned by Shutdown when the broker did
// not exit within its grace period and was killed; its output then holds
// the goroutine dump of SIGQUIT.
var ErrShutdownTimeout = errors.New("bench: broker still running")

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

func (s *syncBuffer) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Len()
}

// since returns the output written after the first n bytes.
func (s *syncBuffer) since(n int) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return string(s.b.Bytes()[n:])
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

// Peers is the --peers flag of a cluster whose broker i+1 listens on
// addrs[i].
func Peers(addrs []string) string {
	peers := make([]string, len(addrs))
	for i, a := range addrs {
		peers[i] = fmt.Sprintf("%d=%s", i+1, a)
	}
	return strings.Join(peers, ",")
}

// Start runs the broker and waits until it accepts connections (and has
// printed ReadyLine, if set). A broker that is not ready when ctx ends is
// killed.
func (p *Proc) Start(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.running() {
		return errors.New("bench: broker already running")
	}
	args := append([]string{"serve", "--listen", p.Addr}, p.Args...)
	start := p.output.Len()
	var out io.Writer = &p.output
	if p.LogTo != nil {
		out = p.LogTo
	} else {
		fmt.Fprintf(&p.output, "=== pubg1 %s\n", strings.Join(args, " "))
	}
	argv := append(append(append([]string(nil), p.Prefix...), p.Binary), args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = out, out
	if p.KillWithParent {
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("bench: starting %s: %w", argv[0], err)
	}
	r := &run{cmd: cmd, done: make(chan struct{})}
	go func() {
		r.err = cmd.Wait()
		close(r.done)
	}()
	p.run = r
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if p.ReadyLine == "" || strings.Contains(p.output.since(start), p.ReadyLine) {
			c, err := net.DialTimeout("tcp", p.Addr, 200*time.Millisecond)
			if err == nil {
				c.Close()
				return nil
			}
		}
		select {
		case <-r.done:
			out := p.output.since(start)
			if strings.Contains(out, "address already in use") {
				return fmt.Errorf("%w: %s", ErrPortTaken, p.Addr)
			}
			return fmt.Errorf("bench: broker exited during start-up (%v):\n%s", r.err, out)
		case <-ctx.Done():
			_ = cmd.Process.Kill()
			<-r.done
			return fmt.Errorf("bench: broker not ready on %s: %w", p.Addr, ctx.Err())
		case <-tick.C:
		}
	}
}

// running reports whether the last started process has not exited; p.mu
// is held.
func (p *Proc) running() bool { return p.run != nil && !p.run.exited() }

// Alive reports whether the process is running (paused counts).
func (p *Proc) Alive() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.running()
}

// Signal sends sig to the running process; a process that has already
// exited is not an error.
func (p *Proc) Signal(sig syscall.Signal) error {
	p.mu.Lock()
	r := p.run
	p.mu.Unlock()
	if r == nil {
		return nil
	}
	if err := r.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("bench: sending %v to the broker: %w", sig, err)
	}
	return nil
}

// Pause freezes the broker with SIGSTOP: it keeps its sockets but answers
// nothing. Resume, Shutdown, Stop and Kill work on a paused broker.
func (p *Proc) Pause() error {
	if err := p.Signal(syscall.SIGSTOP); err != nil {
		return err
	}
	// The signal is delivered asynchronously: a thread running on another
	// CPU goes on until it next enters the kernel. Wait until every
	// thread shows as stopped, so that the caller's next request meets
	// a frozen broker (bounded; without /proc this returns at once).
	pid := p.Pid()
	deadline := time.Now().Add(2 * time.Second)
	for pid > 0 && time.Now().Before(deadline) && !stopped(pid) {
		time.Sleep(time.Millisecond)
	}
	return nil
}

// stopped reports whether every thread of process pid is stopped, or
// true when that cannot be read (no /proc, or the process is gone).
func stopped(pid int) bool {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return true
	}
	for _, task := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/stat", pid, task.Name()))
		if err != nil {
			continue // the thread exited
		}
		// The state follows the command name, which is in parentheses.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 || i+2 >= len(b) {
			continue
		}
		if st := b[i+2]; st != 'T' && st != 't' {
			return false
		}
	}
	return true
}

// Resume thaws a paused broker with SIGCONT.
func (p *Proc) Resume() error { return p.Signal(syscall.SIGCONT) }

// WaitExit waits up to d for the process to exit and reports whether it
// did.
func (p *Proc) WaitExit(d time.Duration) bool {
	done := p.Exited()
	if done == nil {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}

// Shutdown asks the broker to stop with SIGTERM (thawing it first if it is
// paused) and waits up to grace. It returns the exit error of an unclean
// exit; a broker still running after grace gets SIGQUIT, so that the Go
// runtime prints every goroutine into its output, and then SIGKILL.
func (p *Proc) Shutdown(grace time.Duration) error {
	if !p.Alive() {
		return nil
	}
	if err := p.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	_ = p.Resume()
	if p.WaitExit(grace) {
		return p.ExitErr()
	}
	_ = p.Signal(syscall.SIGQUIT)
	if !p.WaitExit(5 * time.Second) {
		p.Kill()
	}
	return fmt.Errorf("%w %v after SIGTERM", ErrShutdownTimeout, grace)
}

// Stop shuts the broker down with SIGTERM, killing it after 30 s.
func (p *Proc) Stop() { _ = p.Shutdown(30 * time.Second) }

// Kill stops the broker with SIGKILL, as a crash would, and waits for it
// to exit.
func (p *Proc) Kill() {
	p.mu.Lock()
	r := p.run
	p.mu.Unlock()
	if r == nil {
		return
	}
	_ = r.cmd.Process.Kill()
	<-r.done
}

// ExitErr is the exit error of the last run once it has exited: nil after
// a clean exit.
func (p *Proc) ExitErr() error {
	p.mu.Lock()
	r := p.run
	p.mu.Unlock()
	if r == nil || !r.exited() {
		return nil
	}
	return r.err
}

// Pid is the running process's ID, 0 when it is not running.
func (p *Proc) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.running() {
		return 0
	}
	return p.run.cmd.Process.Pid
}

// Exited is closed when the last started process exits; nil before the
// first Start.
func (p *Proc) Exited() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.run == nil {
		return nil
	}
	return p.run.done
}

// Output is what the process has printed so far (over every run), unless
// LogTo took it.
func (p *Proc) Output() string { return p.output.String() }
