package bench

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// ClusterConfig is a local PubG1 cluster the runner starts itself.
type ClusterConfig struct {
	Binary  string // path to the pubg1 binary
	Brokers int    // number of brokers (node IDs 1..N)
	// DataDir is the parent of the brokers' data directories (DataDir/1,
	// DataDir/2, ...); "" means a temporary directory that Close removes.
	// A given one is kept.
	DataDir string
	// Netns runs each broker in a network namespace of its own on a bridge
	// (root, Linux only), so that the network between brokers can be cut
	// while the client still reaches every broker; the isolate faults need
	// it.
	Netns bool
	Args  []string  // extra serve flags for every broker
	Log   io.Writer // broker output, each line prefixed "[broker N] " (nil: kept for error reports only)
	// StartTimeout bounds the start of each broker and the wait for all of
	// them to show in the metadata; 0 means one minute.
	StartTimeout time.Duration
}

// Cluster is a running local cluster started by StartCluster; broker i
// (node ID i) is Broker(i).
type Cluster struct {
	cfg     ClusterConfig
	procs   []*Proc
	net     *netnsNet // nil without Netns
	dataDir string
	tmpDir  bool
	logMu   sync.Mutex // serialises broker output lines into cfg.Log
}

// StartCluster starts cfg.Brokers brokers, peers of each other, and
// returns once every one serves and the metadata names all of them. On
// error nothing is left running.
func StartCluster(ctx context.Context, cfg ClusterConfig) (_ *Cluster, err error) {
	if cfg.Brokers < 1 {
		return nil, fmt.Errorf("bench: a cluster needs at least one broker, not %d", cfg.Brokers)
	}
	if cfg.Binary == "" {
		return nil, errors.New("bench: no pubg1 binary given")
	}
	if cfg.StartTimeout <= 0 {
		cfg.StartTimeout = time.Minute
	}
	c := &Cluster{cfg: cfg, dataDir: cfg.DataDir}
	defer func() {
		if err != nil {
			err = errors.Join(err, c.Close())
		}
	}()
	if c.dataDir == "" {
		dir, err := os.MkdirTemp("", "pubg1-cluster-")
		if err != nil {
			return nil, fmt.Errorf("bench: creating the data directory: %w", err)
		}
		c.dataDir, c.tmpDir = dir, true
	}
	if cfg.Netns {
		nn, err := newNetns(ctx, cfg.Brokers)
		if err != nil {
			return nil, err
		}
		c.net = nn
	}
	// Without namespaces the ports are picked free a moment before the
	// brokers take them; another process may take one in between, so a
	// start that finds its port taken starts over with new ones.
	for attempt := 0; ; attempt++ {
		err := c.startAll(ctx)
		if err == nil {
			break
		}
		c.stopAll()
		if c.net != nil || !errors.Is(err, ErrPortTaken) || attempt == 2 {
			return nil, err
		}
	}
	wctx, cancel := context.WithTimeout(ctx, cfg.StartTimeout)
	defer cancel()
	if err := c.waitBrokers(wctx); err != nil {
		return nil, err
	}
	return c, nil
}

// startAll creates the brokers' Procs with fresh addresses and starts
// them one by one.
func (c *Cluster) startAll(ctx context.Context) error {
	n := c.cfg.Brokers
	addrs := make([]string, n)
	for i := range addrs {
		if c.net != nil {
			addrs[i] = c.net.addr(i)
			continue
		}
		a, err := FreeAddr()
		if err != nil {
			return err
		}
		addrs[i] = a
	}
	c.procs = nil
	for i, addr := range addrs {
		id := i + 1
		dir := filepath.Join(c.dataDir, strconv.Itoa(id))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("bench: creating the data directory of broker %d: %w", id, err)
		}
		p := &Proc{
			Binary: c.cfg.Binary,
			Addr:   addr,
			Args: append([]string{"--id", strconv.Itoa(id), "--peers", Peers(addrs), "--data", dir, "--log-level", "warn"},
				c.cfg.Args...),
			KillWithParent: true,
		}
		if c.cfg.Log != nil {
			p.LogTo = &linePrefixer{prefix: fmt.Sprintf("[broker %d] ", id), mu: &c.logMu, w: c.cfg.Log}
		}
		if c.net != nil {
			p.Prefix = c.net.prefixCmd(i)
		}
		c.procs = append(c.procs, p)
		sctx, cancel := context.WithTimeout(ctx, c.cfg.StartTimeout)
		err := p.Start(sctx)
		cancel()
		if err != nil {
			return fmt.Errorf("bench: starting broker %d: %w", id, err)
		}
	}
	return nil
}

// waitBrokers polls every broker until each one's metadata names all
// brokers of the cluster.
func (c *Cluster) waitBrokers(ctx context.Context) error {
	for id := int32(1); id <= int32(len(c.procs)); id++ {
		if err := c.WaitServing(ctx, id); err != nil {
			return err
		}
	}
	return nil
}

// WaitServing waits until broker id answers a Metadata request itself
// that names every broker of the cluster.
func (c *Cluster) WaitServing(ctx context.Context, id int32) error {
	return c.waitServing(ctx, id, len(c.procs))
}

// waitServing waits until broker id answers a Metadata request itself
// that names at least want brokers.
func (c *Cluster) waitServing(ctx context.Context, id int32, want int) error {
	p := c.Broker(id)
	if p == nil {
		return fmt.Errorf("bench: no broker %d", id)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(p.Addr), kgo.RequestRetries(0))
	if err != nil {
		return fmt.Errorf("bench: client for broker %d: %w", id, err)
	}
	defer cl.Close()
	var last error
	for {
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		resp, err := cl.SeedBrokers()[0].Request(rctx, kmsg.NewPtrMetadataRequest())
		cancel()
		if err == nil {
			brokers := resp.(*kmsg.MetadataResponse).Brokers
			if len(brokers) >= want {
				return nil
			}
			ids := make([]int32, len(brokers))
			for i, b := range brokers {
				ids[i] = b.NodeID
			}
			last = fmt.Errorf("its metadata names brokers %v of %d", ids, len(c.procs))
		} else {
			last = err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("bench: broker %d not serving (%v): %w", id, last, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Bootstrap returns the client addresses of all brokers, broker 1 first.
func (c *Cluster) Bootstrap() []string {
	out := make([]string, len(c.procs))
	for i, p := range c.procs {
		out[i] = p.Addr
	}
	return out
}

// Brokers is the number of brokers.
func (c *Cluster) Brokers() int { return len(c.procs) }

// Netns reports whether the brokers run in network namespaces, which the
// network cuts need.
func (c *Cluster) Netns() bool { return c.net != nil }

// DataDir is the parent of the brokers' data directories.
func (c *Cluster) DataDir() string { return c.dataDir }

// Broker returns the process of the broker with this node ID, nil if
// there is none.
func (c *Cluster) Broker(nodeID int32) *Proc {
	if nodeID < 1 || int(nodeID) > len(c.procs) {
		return nil
	}
	return c.procs[nodeID-1]
}

// Restart starts a broker that has exited again, with the same flags,
// port and data, and waits until it serves: it answers Metadata naming a
// majority of the brokers (all of them may not be up: other faults).
func (c *Cluster) Restart(ctx context.Context, nodeID int32) error {
	p := c.Broker(nodeID)
	if p == nil {
		return fmt.Errorf("bench: no broker %d", nodeID)
	}
	sctx, cancel := context.WithTimeout(ctx, c.cfg.StartTimeout)
	defer cancel()
	for {
		err := p.Start(sctx)
		if err == nil {
			break
		}
		// The port is the broker's; a connection in the way is short-lived.
		if !errors.Is(err, ErrPortTaken) || sctx.Err() != nil {
			return fmt.Errorf("bench: restarting broker %d: %w", nodeID, err)
		}
		select {
		case <-sctx.Done():
			return fmt.Errorf("bench: restarting broker %d: %w", nodeID, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
	return c.waitServing(sctx, nodeID, len(c.procs)/2+1)
}

// Cut drops the packets between brokers a and b both ways, while the
// client still reaches both. It needs Netns.
func (c *Cluster) Cut(ctx context.Context, a, b int32) error {
	if c.net == nil {
		return errors.New("bench: cutting the network needs a cluster in network namespaces")
	}
	if c.Broker(a) == nil || c.Broker(b) == nil {
		return fmt.Errorf("bench: no brokers %d and %d to cut apart", a, b)
	}
	return c.net.cut(ctx, int(a-1), int(b-1))
}

// Isolate cuts broker id off from every other broker.
func (c *Cluster) Isolate(ctx context.Context, id int32) error {
	for other := int32(1); other <= int32(len(c.procs)); other++ {
		if other == id {
			continue
		}
		if err := c.Cut(ctx, id, other); err != nil {
			return err
		}
	}
	return nil
}

// Heal removes every network cut (nothing to do without Netns).
func (c *Cluster) Heal(ctx context.Context) error {
	if c.net == nil {
		return nil
	}
	return c.net.heal(ctx)
}

// Cuts lists the broker pairs cut apart, lower node ID first.
func (c *Cluster) Cuts() [][2]int32 {
	if c.net == nil {
		return nil
	}
	var out [][2]int32
	for _, k := range c.net.cutPairs() {
		out = append(out, [2]int32{int32(k[0] + 1), int32(k[1] + 1)})
	}
	slices.SortFunc(out, func(a, b [2]int32) int { return cmp.Or(cmp.Compare(a[0], b[0]), cmp.Compare(a[1], b[1])) })
	return out
}

// stopAll stops every broker at once: SIGTERM (after SIGCONT), SIGKILL
// after a grace period.
func (c *Cluster) stopAll() []error {
	errs := make([]error, len(c.procs))
	var wg sync.WaitGroup
	for i, p := range c.procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := p.Shutdown(15 * time.Second); err != nil {
				errs[i] = fmt.Errorf("bench: broker %d: %w", i+1, err)
			}
		}()
	}
	wg.Wait()
	return errs
}

// Close stops every broker, removes the network namespaces and a
// temporary data directory. It returns the brokers' unclean exits too,
// after cleaning up regardless.
func (c *Cluster) Close() error {
	errs := c.stopAll()
	if c.net != nil {
		errs = append(errs, c.net.close())
		c.net = nil
	}
	if c.tmpDir && c.dataDir != "" {
		if err := os.RemoveAll(c.dataDir); err != nil {
			errs = append(errs, fmt.Errorf("bench: removing %s: %w", c.dataDir, err))
		}
		c.dataDir = ""
	}
	return errors.Join(errs...)
}

// linePrefixer writes each whole line of a broker's output to w with a
// prefix, one line at a time under mu.
type linePrefixer struct {
	prefix string
	mu     *sync.Mutex
	w      io.Writer
	part   []byte
}

func (l *linePrefixer) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.part = append(l.part, b...)
	for {
		i := bytes.IndexByte(l.part, '\n')
		if i < 0 {
			return len(b), nil
		}
		line := append([]byte(l.prefix), l.part[:i+1]...)
		l.part = l.part[i+1:]
		if _, err := l.w.Write(line); err != nil {
			return 0, err
		}
	}
}
