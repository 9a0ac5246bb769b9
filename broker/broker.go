// Package broker is a PubG1 broker: it owns the Kafka listener and the
// client connections, serves each API with one handler, and keeps topics and
// partitions on a storage.Store.
package broker

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"runtime/pprof"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pubg1/pubg1/broker/cluster"
	"github.com/pubg1/pubg1/broker/partition"
	"github.com/pubg1/pubg1/broker/raftmux"
	"github.com/pubg1/pubg1/broker/storage"
	"github.com/pubg1/pubg1/coordinator"
	"github.com/pubg1/pubg1/kproto"
	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// producerIDBlock is how many producer IDs a broker reserves from the
// metadata at a time.
const producerIDBlock = 1000

// Broker is one PubG1 broker process.
type Broker struct {
	cfg          Config
	log          zerolog.Logger
	store        storage.Store
	topics       *catalog
	registry     *kproto.Registry
	buffers      *kproto.BufferPool
	badInput     *kproto.BadInput
	decompressor kgo.Decompressor
	advHost      string
	advPort      int32

	createMu sync.Mutex // serialises topic creation, deletion and config changes

	groups *coordinator.Coordinator // consumer groups (groups.go)
	txns   *coordinator.Txns        // transactions (txn.go)
	// peerClient sends other brokers the requests a broker makes of them
	// (transaction markers).
	peerClient       *peerClient
	txnTopicCreating atomic.Bool // __transaction_state is being created
	txnTopicMismatch atomic.Bool // its partition count was found wrong (logged once)
	txnVerifier      txnVerifier
	sessions         *fetchSessions // fetch sessions (fetch_session.go)

	// The metadata group and the Raft traffic of partitions (see
	// cluster_start.go). A single broker is a cluster of one.
	ctrl          *cluster.Controller
	mux           *raftmux.Mux
	legacy        *legacyData // a single-broker data directory of an older release, until migrated
	reconcileWake chan struct{}
	electWake     chan struct{} // wakes electLoop (failover_partitions.go)
	views         peerViews     // the other brokers' failure detectors (peer_views.go)
	metaElectWake chan struct{} // wakes metaElectLoop (failover_metadata.go)
	registered    chan struct{} // closed once this broker's start is recorded
	lost          *lostData     // this data directory's ID, and what it lost
	rebuilds      rebuilds      // damaged replicas to rebuild (rebuild.go)
	caughtUp      chan struct{} // closed once the local topics reflect the metadata since then
	ready         chan struct{} // closed once clients are served (see initCluster)

	pidMu      sync.Mutex
	nextPID    int64
	pidReserve int64 // first ID not yet durably reserved

	ctx    context.Context
	cancel context.CancelFunc
	ln     net.Listener

	mu      sync.Mutex
	closing bool
	conns   map[net.Conn]struct{}
	wg      sync.WaitGroup
	closed  chan struct{}
	once    sync.Once
	err     error
}

// New binds the listen address, then opens the broker's store and topics:
// a broker that cannot listen creates nothing. It does not serve yet: Start
// does.
func New(cfg Config, log zerolog.Logger) (*Broker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if fi, err := os.Stat(cfg.DataDir); err == nil && !fi.IsDir() {
		return nil, fmt.Errorf("%w: data directory %s is not a directory", ErrInvalidConfig, cfg.DataDir)
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w", cfg.Listen, err)
	}
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		ln.Close()
		return nil, fmt.Errorf("creating data directory: %w", err)
	}
	store, err := storage.OpenBadger(storage.BadgerOptions{Dir: cfg.DataDir, Logger: log, FreeSpaceReserve: cfg.DiskFreeReserve})
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("opening store: %w", err)
	}
	b, err := NewWithStore(cfg, log, store)
	if err != nil {
		ln.Close()
		store.Close()
		return nil, err
	}
	b.ln = ln
	return b, nil
}

// NewWithStore builds a broker over an already open store, which the broker
// then owns and closes.
func NewWithStore(cfg Config, log zerolog.Logger, store storage.Store) (*Broker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	b := &Broker{
		cfg:          cfg,
		log:          log,
		store:        store,
		topics:       newCatalog(),
		decompressor: kgo.DefaultDecompressor(),
		buffers:      &kproto.BufferPool{},
		badInput:     kproto.NewBadInput(log),
		sessions:     newFetchSessions(cfg.MaxFetchSessions),
		ctx:          ctx,
		cancel:       cancel,
		conns:        make(map[net.Conn]struct{}),
		closed:       make(chan struct{}),
	}
	if len(b.cfg.Peers) == 0 {
		// A single broker: a cluster of one, whose metadata group has this
		// broker as its only voter.
		b.cfg.Peers = map[int32]string{cfg.NodeID: cfg.Listen}
	}
	inc, _, err := loadIncarnation(store)
	if err != nil {
		cancel()
		return nil, err
	}
	b.lost = &lostData{self: b.cfg.NodeID, incarnation: inc}
	legacy, err := readLegacyData(store)
	if err != nil {
		cancel()
		return nil, err
	}
	if legacy != nil {
		if !b.single() {
			cancel()
			return nil, fmt.Errorf("%w: %s holds a single broker's topics from an older release; start it once without --peers to convert them", ErrInvalidConfig, cfg.DataDir)
		}
		b.legacy = legacy
		if n, ok := legacy.offsetsPartitions(); ok {
			// An existing __consumer_offsets keeps its partition count.
			b.cfg.OffsetsTopicPartitions = n
		}
	}
	if err := b.startCluster(); err != nil {
		cancel()
		return nil, err
	}
	if err := b.initGroups(); err != nil {
		cancel()
		b.ctrl.Close()
		b.mux.Close()
		return nil, err
	}
	if err := b.initTxns(); err != nil {
		cancel()
		b.ctrl.Close()
		b.mux.Close()
		return nil, err
	}
	b.registry = kproto.NewRegistry()
	for _, api := range b.apis() {
		b.registry.Register(api)
	}
	return b, nil
}

// apis lists every API the broker serves; each comes from its handler file.
func (b *Broker) apis() []kproto.API {
	return []kproto.API{
		b.apiVersionsAPI(),
		b.metadataAPI(),
		b.produceAPI(),
		b.fetchAPI(),
		b.listOffsetsAPI(),
		b.createTopicsAPI(),
		b.deleteTopicsAPI(),
		b.createPartitionsAPI(),
		b.deleteRecordsAPI(),
		b.describeConfigsAPI(),
		b.alterConfigsAPI(),
		b.incrementalAlterConfigsAPI(),
		b.describeClusterAPI(),
		b.initProducerIDAPI(),
		b.addPartitionsToTxnAPI(),
		b.addOffsetsToTxnAPI(),
		b.endTxnAPI(),
		b.writeTxnMarkersAPI(),
		b.txnOffsetCommitAPI(),
		b.describeProducersAPI(),
		b.describeTransactionsAPI(),
		b.listTransactionsAPI(),
		b.offsetForLeaderEpochAPI(),
		b.findCoordinatorAPI(),
		b.joinGroupAPI(),
		b.syncGroupAPI(),
		b.heartbeatAPI(),
		b.leaveGroupAPI(),
		b.offsetCommitAPI(),
		b.offsetFetchAPI(),
		b.offsetDeleteAPI(),
		b.describeGroupsAPI(),
		b.listGroupsAPI(),
		b.deleteGroupsAPI(),
		b.electLeadersAPI(),
	}
}

// SupportedAPIs lists the Kafka APIs a broker serves and their version
// ranges, ordered by key, as ApiVersions reports them.
func SupportedAPIs() []kmsg.ApiVersionsResponseApiKey {
	reg := kproto.NewRegistry()
	// The API entries only name their handlers; none runs here.
	for _, api := range (&Broker{}).apis() {
		reg.Register(api)
	}
	return reg.Versions()
}

// allocateProducerID hands out a producer ID never given before, reserving
// them durably in blocks.
func (b *Broker) allocateProducerID() (int64, error) {
	b.pidMu.Lock()
	defer b.pidMu.Unlock()
	if b.nextPID >= b.pidReserve {
		res, err := b.propose(cluster.AllocProducerIDsCommand(producerIDBlock))
		if err != nil {
			return 0, fmt.Errorf("reserving producer IDs: %w", err)
		}
		b.nextPID, b.pidReserve = res.Value, res.Value+producerIDBlock
	}
	id := b.nextPID
	b.nextPID++
	return id, nil
}

// Start listens, unless New already did, and begins serving. It does not
// block.
func (b *Broker) Start() error {
	ln := b.ln
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", b.cfg.Listen); err != nil {
			return fmt.Errorf("listening on %s: %w", b.cfg.Listen, err)
		}
		b.ln = ln
	}
	adv := b.cfg.Advertise
	if adv == "" {
		adv = ln.Addr().String()
	}
	host, port, err := net.SplitHostPort(adv)
	if err != nil {
		ln.Close()
		return fmt.Errorf("advertised address %q: %w", adv, err)
	}
	p, err := strconv.ParseInt(port, 10, 32)
	if err != nil {
		ln.Close()
		return fmt.Errorf("advertised port %q: %w", port, err)
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	b.advHost, b.advPort = host, int32(p)
	b.groups.Start()
	b.txns.Start()
	b.goFunc(b.acceptLoop)
	b.goFunc(func() { b.every(b.cfg.RetentionCheckInterval, b.enforceRetention) })
	b.goFunc(func() { b.every(b.cfg.CleanerBackoff, b.compact) })
	b.goFunc(func() { b.every(badInputSummary, func(time.Time) { b.badInput.Summarize(badInputSummary) }) })
	b.goFunc(b.reconcileLoop)
	b.goFunc(b.electLoop)
	if !b.single() {
		b.goFunc(b.metaElectLoop)
	}
	b.goFunc(b.initCluster)
	if b.cfg.AutoLeaderRebalance {
		b.goFunc(func() { b.every(b.cfg.LeaderImbalanceCheckInterval, b.rebalanceLeaders) })
	}
	// The cluster ID is logged once the metadata has it.
	b.log.Info().Str("listen", ln.Addr().String()).Int32("node_id", b.cfg.NodeID).Str("data", b.cfg.DataDir).
		Int("brokers", len(b.cfg.Peers)).Msg("broker ready")
	return nil
}

// Addr is the address the broker listens on; valid after Start.
func (b *Broker) Addr() string { return b.ln.Addr().String() }

// badInputSummary is how often the connections closed for bad input are
// summarised in the log (each is logged at debug level).
const badInputSummary = time.Minute

// goFunc runs f on the broker's WaitGroup unless closing has begun.
func (b *Broker) goFunc(f func()) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closing {
		return false
	}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		f()
	}()
	return true
}

func (b *Broker) acceptLoop() {
	var delay time.Duration
	for {
		nc, err := b.ln.Accept()
		if err != nil {
			b.mu.Lock()
			closing := b.closing
			b.mu.Unlock()
			if closing || b.ctx.Err() != nil {
				return
			}
			// Temporary failures such as running out of file descriptors:
			// back off rather than spin or die.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			b.log.Warn().Err(err).Dur("retry_in", delay).Msg("accept failed")
			select {
			case <-time.After(delay):
				continue
			case <-b.ctx.Done():
				return
			}
		}
		delay = 0
		if tc, ok := nc.(*net.TCPConn); ok {
			_ = tc.SetNoDelay(true)
		}
		b.mu.Lock()
		if b.closing {
			b.mu.Unlock()
			nc.Close()
			return
		}
		b.conns[nc] = struct{}{}
		b.wg.Add(1)
		b.mu.Unlock()
		go func() {
			defer b.wg.Done()
			b.serveConn(nc)
		}()
	}
}

func (b *Broker) serveConn(nc net.Conn) {
	defer func() {
		b.mu.Lock()
		delete(b.conns, nc)
		b.mu.Unlock()
	}()
	if !b.single() {
		// Brokers' Raft sessions arrive on the Kafka listener too. (A
		// single broker's metadata group has no other voter to hear from.)
		isRaft, c, err := raftmux.IsRaft(nc, kproto.DefaultIdleTimeout)
		if err != nil {
			nc.Close()
			return
		}
		if isRaft {
			b.mux.ServeConn(c)
			return
		}
		nc = c
	}
	// Like a Kafka broker that has not caught up with the cluster
	// metadata, serve clients only once this broker's start is recorded
	// and its topics are built from the metadata since: before, it would
	// answer Metadata from an empty or partial state (unknown topics, no
	// cluster ID), which some clients treat as final.
	select {
	case <-b.ready:
	case <-b.ctx.Done():
		nc.Close()
		return
	}
	// Serve logs why a connection ended.
	_ = kproto.Serve(b.ctx, nc, b.registry, kproto.ConnConfig{MaxFrameBytes: b.cfg.MaxFrameBytes, Logger: b.log, Buffers: b.buffers, BadInput: b.badInput})
}

// every calls fn with the time every interval until the broker stops.
func (b *Broker) every(interval time.Duration, fn func(now time.Time)) {
	b.everyOrWoken(interval, nil, fn)
}

// everyOrWoken is every, and also calls fn whenever wake is signalled (see
// signal). fn gets the time it is called, not the tick's: a tick that
// waited while the process was stopped would tell the time it stopped.
func (b *Broker) everyOrWoken(interval time.Duration, wake <-chan struct{}, fn func(now time.Time)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-b.ctx.Done():
			return
		case <-t.C:
		case <-wake:
		}
		fn(time.Now())
	}
}

// signal wakes the loop that waits on ch, a channel of capacity 1, without
// blocking: signals that arrive while one is pending merge into it.
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// enforceRetention applies retention.ms and retention.bytes.
func (b *Broker) enforceRetention(now time.Time) {
	for _, t := range b.topics.list() {
		// Every topic gets a pass: without a retention limit it deletes
		// nothing itself, but a replica still frees what lies below a log
		// start that DeleteRecords moved.
		retention, retentionBytes := t.effective.retention, t.effective.retentionBytes
		if !t.effective.deletePolicy {
			retention, retentionBytes = -1, -1
		}
		for i, p := range t.parts {
			if b.ctx.Err() != nil {
				return
			}
			if _, err := p.EnforceRetention(now, retention, retentionBytes); err != nil {
				b.log.Warn().Err(err).Str("topic", t.name).Int("partition", i).Msg("retention failed")
			}
		}
	}
}

// compact compacts the topics whose cleanup.policy includes compact.
func (b *Broker) compact(now time.Time) {
	for _, t := range b.topics.list() {
		if !t.effective.compactPolicy {
			continue
		}
		for i, p := range t.parts {
			if b.ctx.Err() != nil {
				return
			}
			res, err := p.Compact(now, t.effective.compact)
			switch {
			case err != nil:
				b.log.Warn().Err(err).Str("topic", t.name).Int("partition", i).Msg("compaction failed")
			case res.Ran:
				b.log.Debug().Str("topic", t.name).Int("partition", i).Int64("bytes_before", res.BytesBefore).
					Int64("bytes_after", res.BytesAfter).Int("records_removed", res.RecordsRemoved).Int("markers_removed", res.MarkersRemoved).Msg("compacted")
			}
		}
	}
}

// Close stops the broker: it stops accepting, closes connections, waits for
// every goroutine, then closes partitions and the store. It is safe to call
// more than once.
func (b *Broker) Close() error {
	b.once.Do(func() {
		b.mu.Lock()
		b.closing = true
		b.mu.Unlock()
		if b.ln != nil {
			b.ln.Close() // stop accepting
		}
		// While the Raft sessions are still up, so that other brokers
		// take over at once instead of after an election timeout.
		b.closeStep("leadership hand-off", b.handOffLeadership)
		b.mu.Lock()
		for nc := range b.conns {
			nc.Close()
		}
		b.mu.Unlock()
		// Every Raft RPC still waiting on a peer (a frozen one keeps its
		// connections open) fails now instead of at its timeout.
		b.closeStep("raft sessions", func() { b.mux.Close() })
		b.cancel()
		b.closeStep("connections and background work", b.wg.Wait)
		b.closeStep("partitions", b.closePartitions)
		// After the partitions: appends the coordinator still waits for
		// have failed by now.
		b.closeStep("transactions", func() { b.txns.Close() })
		b.closeStep("consumer groups", func() { b.groups.Close() })
		b.closeStep("inter-broker client", func() { b.peerClient.close() })
		b.closeStep("cluster metadata", func() { b.ctrl.Close() })
		began := time.Now()
		b.err = b.store.Close()
		b.logStep("store", time.Since(began))
		close(b.closed)
	})
	<-b.closed
	return b.err
}

// closeStepTimeout bounds each step of Close.
const closeStepTimeout = 10 * time.Second

// slowCloseStep is how long a step of Close may take before its time is
// logged at info level rather than debug.
const slowCloseStep = time.Second

// closeStep runs one step of Close. A step that does not finish in time is
// logged with the broker's goroutines and left behind, so that a stuck
// component cannot keep the process from exiting; the store refuses
// writes once closed, so nothing it might still do can corrupt the data.
func (b *Broker) closeStep(name string, fn func()) {
	done := make(chan struct{})
	began := time.Now()
	go func() {
		defer close(done)
		fn()
	}()
	select {
	case <-done:
		b.logStep(name, time.Since(began))
	case <-time.After(closeStepTimeout):
		// Goroutines grouped by stack: a full dump (runtime.Stack) of the
		// tens of thousands a broker with many partitions runs stops the
		// process for seconds, and is mostly the same few stacks.
		var buf bytes.Buffer
		_ = pprof.Lookup("goroutine").WriteTo(&buf, 1)
		b.log.Error().Str("step", name).Dur("waited", closeStepTimeout).Str("goroutines", buf.String()).
			Msg("shutdown step did not finish; continuing without it")
	}
}

// logStep logs how long a step of Close took: at info level if it was
// slow, at debug level otherwise.
func (b *Broker) logStep(name string, took time.Duration) {
	ev := b.log.Debug()
	if took > slowCloseStep {
		ev = b.log.Info()
	}
	ev.Str("step", name).Dur("took", took).Msg("shutdown step done")
}

// closePartitions closes every partition, several at once: each replicated
// one waits for its Raft group to stop, and a broker may hold thousands.
func (b *Broker) closePartitions() {
	var wg sync.WaitGroup
	sem := make(chan struct{}, closeParallel)
	for _, t := range b.topics.list() {
		for i, p := range t.parts {
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				began := time.Now()
				p.Close()
				if took := time.Since(began); took > slowCloseStep {
					b.log.Info().Str("topic", t.name).Int("partition", i).Dur("took", took).Msg("partition was slow to close")
				}
			})
		}
	}
	wg.Wait()
}

// closeParallel is how many partitions close at once.
const closeParallel = 16

// handle adapts a synchronous handler of one request type to kproto.
func handle[R kmsg.Request](fn func(ctx context.Context, req *kproto.Request, r R) kmsg.Response) kproto.Handler {
	return func(ctx context.Context, req *kproto.Request, respond func(kmsg.Response)) {
		respond(fn(ctx, req, req.Msg.(R)))
	}
}

// handOffBudget bounds the whole leadership hand-off of a shutdown. A
// transfer usually takes milliseconds; one whose target is stopping too (a
// whole cluster shut down at once) waits for Raft's election timeout, and
// its partition fails over anyway once this broker is gone.
const handOffBudget = 3 * time.Second

// handOffLeadership moves every Raft leadership this broker holds to
// another replica before it shuts down, all at once, within handOffBudget.
func (b *Broker) handOffLeadership() {
	ctx, cancel := context.WithTimeout(context.Background(), handOffBudget)
	defer cancel()
	var wg sync.WaitGroup
	for _, t := range b.topics.list() {
		for _, p := range t.parts {
			if rp, ok := p.(partition.Replica); ok && rp.IsLeader() {
				wg.Go(func() { rp.HandOff(ctx) })
			}
		}
	}
	wg.Go(b.ctrl.HandOff)
	wg.Wait()
}
