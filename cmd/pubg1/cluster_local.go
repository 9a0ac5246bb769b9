package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/pubg1/pubg1/bench"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// The states of a broker of a local cluster, as cluster status shows them.
const (
	stateStarting = "starting" // launched, not yet serving
	stateRunning  = "running"  // serving
	stateStopped  = "stopped"  // exited after cluster stop or the cluster's shutdown
	stateExited   = "exited"   // exited on its own or after cluster kill
)

const (
	// stopGrace is how long a broker may take to shut down after SIGTERM
	// before it is killed.
	stopGrace = 30 * time.Second
	// servingCheckEvery spaces the Metadata requests of a broker that does
	// not serve yet; servingCheckTimeout bounds each.
	servingCheckEvery   = 250 * time.Millisecond
	servingCheckTimeout = 2 * time.Second
)

// errClusterStopping refuses an action once the cluster is shutting down.
var errClusterStopping = errors.New("the cluster is shutting down")

// localCluster supervises the broker processes of cluster up: it starts,
// stops, kills and restarts them and records how each last exited. It
// prints every action it carries out and every exit.
type localCluster struct {
	ctx     context.Context // ends when the cluster shuts down; aborts starts
	brokers []*localBroker
	out     *linePrinter
	watch   sync.WaitGroup // one exit watcher per started process
	// startTimeout bounds how long a broker started again may take to serve.
	startTimeout time.Duration
}

// localBroker is one broker of a local cluster.
type localBroker struct {
	id   int
	addr string
	dir  string
	proc *bench.Proc
	log  *prefixWriter // its output, which also keeps the last lines

	// op lets one action at a time (start, stop, kill) act on the broker.
	op sync.Mutex

	mu       sync.Mutex // guards the fields below
	state    string
	stopping bool            // the process was asked to stop, not killed
	exit     string          // how the last process exited
	run      <-chan struct{} // Exited of the process whose exit is not yet recorded
}

// brokerStatus is one broker in cluster status.
type brokerStatus struct {
	ID      int    `json:"id"`
	Address string `json:"address"`
	DataDir string `json:"data_dir"`
	PID     int    `json:"pid,omitempty"`
	State   string `json:"state"`
	Exit    string `json:"exit,omitempty"`
}

// clusterStatus is what cluster status prints.
type clusterStatus struct {
	Data      string         `json:"data"`
	Bootstrap string         `json:"bootstrap"`
	Brokers   []brokerStatus `json:"brokers"`
}

// broker returns broker id.
func (c *localCluster) broker(id int) (*localBroker, error) {
	if id < 1 || id > len(c.brokers) {
		return nil, fmt.Errorf("no broker %d: the cluster has brokers 1-%d", id, len(c.brokers))
	}
	return c.brokers[id-1], nil
}

// bootstrap is every broker's address, for clients.
func (c *localCluster) bootstrap() string {
	addrs := make([]string, len(c.brokers))
	for i, b := range c.brokers {
		addrs[i] = b.addr
	}
	return strings.Join(addrs, ",")
}

func (c *localCluster) status(data string) clusterStatus {
	st := clusterStatus{Data: data, Bootstrap: c.bootstrap(), Brokers: []brokerStatus{}}
	for _, b := range c.brokers {
		c.recordExit(b, b.pending())
		b.mu.Lock()
		bs := brokerStatus{ID: b.id, Address: b.addr, DataDir: b.dir, State: b.state, Exit: b.exit}
		b.mu.Unlock()
		if bs.State == stateStarting || bs.State == stateRunning {
			bs.PID = b.proc.Pid()
		}
		st.Brokers = append(st.Brokers, bs)
	}
	return st
}

// launch starts b's process and returns once it accepts connections; it
// does not wait for the broker to serve. b.op is held.
func (c *localCluster) launch(ctx context.Context, b *localBroker) error {
	if c.ctx.Err() != nil {
		return errClusterStopping
	}
	c.recordExit(b, b.pending()) // an exit the watcher has not recorded yet
	b.mu.Lock()
	b.state, b.exit = stateStarting, ""
	b.mu.Unlock()
	b.log.forget() // so that a start-up failure shows this run's line
	before := b.proc.Exited()
	err := b.proc.Start(ctx)
	started := b.proc.Exited() != before
	if started {
		done := b.proc.Exited()
		b.mu.Lock()
		b.run = done
		b.mu.Unlock()
		c.watch.Go(func() {
			<-done
			c.recordExit(b, done)
		})
	}
	switch {
	case err == nil:
		c.out.line("broker %d  %s  pid %d", b.id, b.addr, b.proc.Pid())
		return nil
	case !started: // the binary did not run
		b.mu.Lock()
		b.state, b.exit = stateExited, errorLine(err)
		b.mu.Unlock()
		return fmt.Errorf("starting broker %d: %w", b.id, err)
	case c.ctx.Err() != nil:
		return errClusterStopping
	case ctx.Err() != nil: // Start killed it
		return fmt.Errorf("broker %d (%s) accepted no connection within the start timeout", b.id, b.addr)
	}
	return b.startupExit()
}

// awaitServing polls b with Metadata requests until it answers with a
// metadata controller and every broker that wants lists, and marks it
// running. It fails when b's process exits or ctx ends first.
func (c *localCluster) awaitServing(ctx context.Context, b *localBroker, limit time.Duration, wants func() []int) error {
	exited := b.proc.Exited()
	// An exit also ends a request under way: the port may belong to a
	// process that accepts connections but never answers.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-exited:
			cancel()
		case <-ctx.Done():
		}
	}()
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.addr))
	if err != nil {
		return fmt.Errorf("broker %d: %w", b.id, err)
	}
	defer cl.Close()
	seed := cl.SeedBrokers()[0]
	tick := time.NewTicker(servingCheckEvery)
	defer tick.Stop()
	for {
		problem := servingProblem(ctx, seed, wants())
		if problem == "" {
			b.mu.Lock()
			if b.state == stateStarting {
				b.state = stateRunning
			}
			b.mu.Unlock()
			return nil
		}
		select {
		case <-exited:
			return b.startupExit()
		default:
		}
		select {
		case <-exited:
			return b.startupExit()
		case <-ctx.Done():
			if c.ctx.Err() != nil {
				return errClusterStopping
			}
			return fmt.Errorf("broker %d (%s) not serving within %s: %s", b.id, b.addr, limit, problem)
		case <-tick.C:
		}
	}
}

// servingProblem asks a broker for its metadata and says what keeps it from
// serving: no answer, no metadata controller, or a broker of wants missing
// from its broker list. It is empty when the broker serves.
func servingProblem(ctx context.Context, seed *kgo.Broker, wants []int) string {
	ctx, cancel := context.WithTimeout(ctx, servingCheckTimeout)
	defer cancel()
	req := kmsg.NewPtrMetadataRequest()
	req.Topics = []kmsg.MetadataRequestTopic{} // the brokers, no topics
	resp, err := seed.Request(ctx, req)
	if err != nil {
		return "no answer to Metadata: " + errorLine(err)
	}
	md := resp.(*kmsg.MetadataResponse)
	if md.ControllerID < 0 {
		return "no metadata controller yet"
	}
	listed := make(map[int]bool)
	for _, mb := range md.Brokers {
		listed[int(mb.NodeID)] = true
	}
	var missing []string
	for _, id := range wants {
		if !listed[id] {
			missing = append(missing, fmt.Sprint(id))
		}
	}
	if len(missing) > 0 {
		return "its metadata does not list broker " + strings.Join(missing, ", ")
	}
	return ""
}

// startupExit is the error of a broker that exited while it started: its
// exit status and the last line it printed, which says why.
func (b *localBroker) startupExit() error {
	msg := fmt.Sprintf("broker %d (%s) exited during start-up (%s)", b.id, b.addr, exitText(b.proc.ExitErr()))
	if last := strings.TrimPrefix(b.log.lastLine(), "pubg1: "); last != "" {
		msg += ": " + last
	}
	return errors.New(msg)
}

// stop shuts b down with SIGTERM and waits for it to exit.
func (c *localCluster) stop(b *localBroker) error {
	b.op.Lock()
	defer b.op.Unlock()
	run := b.pending()
	if !b.proc.Alive() {
		c.recordExit(b, run)
		return b.notRunning()
	}
	c.out.line("stopping broker %d (SIGTERM)", b.id)
	b.mu.Lock()
	b.stopping = true
	b.mu.Unlock()
	err := b.proc.Shutdown(stopGrace)
	c.recordExit(b, run)
	if errors.Is(err, bench.ErrShutdownTimeout) {
		return fmt.Errorf("broker %d did not stop within %s and was killed", b.id, stopGrace)
	}
	return nil
}

// kill stops b with SIGKILL, as a crash would, and waits for it to exit.
func (c *localCluster) kill(b *localBroker) error {
	b.op.Lock()
	defer b.op.Unlock()
	run := b.pending()
	if !b.proc.Alive() {
		c.recordExit(b, run)
		return b.notRunning()
	}
	c.out.line("killing broker %d (SIGKILL)", b.id)
	b.proc.Kill()
	c.recordExit(b, run)
	return nil
}

// restart starts a stopped broker again with its ID, address and data
// directory, and waits until it serves.
func (c *localCluster) restart(b *localBroker) error {
	ctx, cancel := context.WithTimeout(c.ctx, c.startTimeout)
	defer cancel()
	b.op.Lock()
	if b.proc.Alive() {
		b.op.Unlock()
		return fmt.Errorf("broker %d is already running (pid %d)", b.id, b.proc.Pid())
	}
	if c.ctx.Err() != nil {
		b.op.Unlock()
		return errClusterStopping
	}
	c.out.line("starting broker %d", b.id)
	err := c.launch(ctx, b)
	b.op.Unlock()
	if err != nil {
		return err
	}
	// A restarted broker serves once its own metadata names a controller
	// and lists itself and every other broker that runs.
	if err := c.awaitServing(ctx, b, c.startTimeout, func() []int { return c.running(b.id) }); err != nil {
		return err
	}
	c.out.line("broker %d serving", b.id)
	return nil
}

// running is the IDs of the brokers that serve, and self.
func (c *localCluster) running(self int) []int {
	ids := []int{self}
	for _, b := range c.brokers {
		b.mu.Lock()
		if b.id != self && b.state == stateRunning {
			ids = append(ids, b.id)
		}
		b.mu.Unlock()
	}
	return ids
}

// stopAll shuts every running broker down at once and waits until every
// process has exited and been recorded. c.ctx has ended, so nothing starts
// again.
func (c *localCluster) stopAll() {
	var wg sync.WaitGroup
	for _, b := range c.brokers {
		wg.Go(func() {
			if err := c.stop(b); err != nil && !errors.Is(err, errNotRunning) {
				c.out.line("%v", err)
			}
		})
	}
	wg.Wait()
	c.watch.Wait()
}

// errNotRunning (wrapped) is the error of stop and kill on a broker that
// does not run.
var errNotRunning = errors.New("not running")

func (b *localBroker) notRunning() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.exit == "" {
		return fmt.Errorf("broker %d is %w", b.id, errNotRunning)
	}
	return fmt.Errorf("broker %d is %w (%s: %s)", b.id, errNotRunning, b.state, b.exit)
}

// pending is the Exited channel of b's process whose exit is not yet
// recorded, nil if none.
func (b *localBroker) pending() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.run
}

// recordExit records and prints the exit of b's process whose Exited
// channel is run, once: the exit watcher and the action that stopped the
// process both call it. It does nothing while that process runs.
func (c *localCluster) recordExit(b *localBroker, run <-chan struct{}) {
	if run == nil {
		return
	}
	select {
	case <-run:
	default:
		return
	}
	b.mu.Lock()
	if b.run != run {
		b.mu.Unlock()
		return
	}
	b.run = nil
	b.exit = exitText(b.proc.ExitErr())
	b.state = stateExited
	// Once the cluster shuts down, an exit is a stop even if it came first:
	// Ctrl-C in a terminal signals the brokers as well.
	if b.stopping || c.ctx.Err() != nil {
		b.state = stateStopped
	}
	b.stopping = false
	state, how := b.state, b.exit
	b.mu.Unlock()
	c.out.line("broker %d %s (%s)", b.id, state, how)
}

// exitText is how a process exited: "exit status 0", "exit status 1",
// "signal: killed".
func exitText(err error) string {
	if err == nil {
		return "exit status 0"
	}
	if ee, ok := errors.AsType[*exec.ExitError](err); ok {
		return ee.Error()
	}
	return err.Error()
}

// linePrinter prints whole lines from any goroutine.
type linePrinter struct {
	mu sync.Mutex
	w  io.Writer
}

func (p *linePrinter) line(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, format+"\n", args...)
}

// prefixWriter writes each line of a broker's output with its name, and
// keeps the last line, which says why a broker that failed to start did.
type prefixWriter struct {
	prefix string
	mu     *sync.Mutex // shared by the brokers' writers: one line at a time
	w      *os.File
	part   []byte
	last   string
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.part = append(p.part, b...)
	for {
		i := bytes.IndexByte(p.part, '\n')
		if i < 0 {
			break
		}
		line := string(p.part[:i])
		p.part = p.part[i+1:]
		if strings.TrimSpace(line) != "" {
			p.last = strings.TrimSpace(line)
		}
		if _, err := fmt.Fprintf(p.w, "%s%s\n", p.prefix, line); err != nil {
			return 0, err
		}
	}
	return len(b), nil
}

// lastLine is the last non-empty line the broker printed.
func (p *prefixWriter) lastLine() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.last
}

// forget drops the last line, before the broker starts again.
func (p *prefixWriter) forget() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.last = ""
}
