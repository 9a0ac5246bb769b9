package coordinator

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"sync"
	"time"

	"github.com/pubg1/pubg1/broker/partition"
	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// The transaction coordinator. A transactional ID belongs to one partition
// of the internal compacted topic __transaction_state, as a group belongs
// to one of __consumer_offsets; the leader of that partition coordinates
// it. Each change of a transaction is a record of Kafka's format written
// to that partition before it takes effect, so a new leader rebuilds every
// transaction by replaying the partition and then finishes those that were
// being committed or aborted.
//
// A transaction ends in three durable steps: the decision (PrepareCommit or
// PrepareAbort), a marker in every partition the transaction wrote to (and
// in the offsets partition of a group whose offsets it committed), and the
// completion (CompleteCommit or CompleteAbort). EndTxn is answered after
// the completion, so a client never has to retry its next transaction.

// TxnStateTopic is the internal topic holding transaction state.
const TxnStateTopic = "__transaction_state"

// TxnConfig is the transaction coordinator's configuration: Kafka's
// transaction.* broker settings.
type TxnConfig struct {
	// Partitions is the number of partitions of __transaction_state
	// (transaction.state.log.num.partitions).
	Partitions int32
	// OffsetsPartitions is the number of partitions of
	// __consumer_offsets, where AddOffsetsToTxn finds a group's partition.
	OffsetsPartitions int32
	// MaxTimeout bounds the timeout a producer may ask for
	// (transaction.max.timeout.ms).
	MaxTimeout time.Duration
	// IDExpiration is how long an idle transactional ID is kept
	// (transactional.id.expiration.ms).
	IDExpiration time.Duration
	// CheckInterval is how often timed-out transactions are aborted and
	// expired IDs removed
	// (transaction.abort.timed.out.transaction.cleanup.interval.ms).
	CheckInterval time.Duration
	// Decompressor reads compressed batches while loading; nil uses
	// franz-go's default.
	Decompressor kgo.Decompressor
}

// DefaultTxnConfig returns Kafka's defaults.
func DefaultTxnConfig() TxnConfig {
	return TxnConfig{
		Partitions:        50,
		OffsetsPartitions: 50,
		MaxTimeout:        15 * time.Minute,
		IDExpiration:      7 * 24 * time.Hour,
		CheckInterval:     10 * time.Second,
	}
}

// Validate checks the configuration.
func (c *TxnConfig) Validate() error {
	switch {
	case c.Partitions < 1:
		return fmt.Errorf("%w: transaction state partitions %d must be at least 1", ErrInvalidConfig, c.Partitions)
	case c.OffsetsPartitions < 1:
		return fmt.Errorf("%w: offsets topic partitions %d must be at least 1", ErrInvalidConfig, c.OffsetsPartitions)
	case c.MaxTimeout <= 0:
		return fmt.Errorf("%w: transaction max timeout %v must be positive", ErrInvalidConfig, c.MaxTimeout)
	case c.IDExpiration <= 0:
		return fmt.Errorf("%w: transactional ID expiration %v must be positive", ErrInvalidConfig, c.IDExpiration)
	case c.CheckInterval <= 0:
		return fmt.Errorf("%w: transaction check interval %v must be positive", ErrInvalidConfig, c.CheckInterval)
	}
	return nil
}

// Errors of the transaction coordinator, each the Kafka error of the same
// meaning.
var (
	ErrConcurrentTransactions = kerr.ConcurrentTransactions
	ErrInvalidTxnState        = kerr.InvalidTxnState
	ErrProducerFenced         = kerr.ProducerFenced
	ErrInvalidProducerIDMap   = kerr.InvalidProducerIDMapping
	ErrInvalidTxnTimeout      = kerr.InvalidTransactionTimeout
)

// MarkerRequest asks for the markers that end one transaction.
type MarkerRequest struct {
	ProducerID       int64
	Epoch            int16
	Commit           bool
	CoordinatorEpoch int32
	Partitions       []TopicPartition
}

// Markers writes transaction markers; the broker implements it.
type Markers interface {
	// WriteMarkers writes r's marker into each of its partitions and
	// returns once every one is durable (a partition whose topic is gone
	// needs none). It retries what fails until ctx ends.
	WriteMarkers(ctx context.Context, r MarkerRequest) error
}

// Txns is the transaction coordinator of the __transaction_state
// partitions this broker leads.
type Txns struct {
	cfg     TxnConfig
	log     zerolog.Logger
	markers Markers
	ids     func() (int64, error)
	shards  []*txnShard

	mu      sync.Mutex // guards closing and wg.Add
	closing bool
	wg      sync.WaitGroup
	stop    chan struct{}
	once    sync.Once
}

// txnShard is one __transaction_state partition and its transactions.
type txnShard struct {
	id int32

	mu         sync.Mutex
	state      shardState
	epoch      uint64 // bumped by every Elect and Resign
	coordEpoch int32  // the partition's leader epoch: the markers' coordinator epoch
	p          partition.Partition
	ctx        context.Context // ends when the shard is resigned
	cancel     context.CancelFunc
	txns       map[string]*txnMeta
}

// endWaiter is an EndTxn waiting for its transaction's completion.
type endWaiter func(pid int64, epoch int16, err error)

// errOnly makes an endWaiter of a callback that takes only the error.
func errOnly(done func(error)) endWaiter {
	return func(_ int64, _ int16, err error) { done(err) }
}

// txnMeta is one transactional ID's state.
type txnMeta struct {
	id        string
	pid       int64
	epoch     int16
	lastPID   int64 // the producer ID before the last rollover, or -1
	lastEpoch int16 // the epoch before the last bump, or -1
	timeout   time.Duration
	state     kmsg.TransactionState
	parts     map[TopicPartition]struct{}
	start     time.Time // of the ongoing transaction
	updated   time.Time
	// busy is set while a change is being written or markers sent: other
	// requests get CONCURRENT_TRANSACTIONS meanwhile.
	busy bool
	// completing is set once a decided transaction's markers are durable
	// and its completion is being written: its EndTxn was answered, and
	// the producer's next AddPartitions wait for the write rather than
	// fail.
	completing bool
	// ended are the EndTxn requests waiting for the completion; they are
	// told the producer ID and epoch the producer goes on with.
	ended []endWaiter
	// addQueue are AddPartitions waiting for the write in flight.
	addQueue []queuedAdd
	// nextPID is the producer ID a transaction ending with the epoch
	// exhausted hands over to (transactions version 2), or -1.
	nextPID int64
}

// decided reports whether the transaction's commit or abort is decided
// and not yet complete.
func (m *txnMeta) decided() bool {
	return m.state == kmsg.TransactionStatePrepareCommit || m.state == kmsg.TransactionStatePrepareAbort
}

func (m *txnMeta) clone() *txnMeta {
	c := *m
	c.parts = make(map[TopicPartition]struct{}, len(m.parts))
	for tp := range m.parts {
		c.parts[tp] = struct{}{}
	}
	c.ended, c.addQueue, c.busy, c.completing = nil, nil, false, false
	return &c
}

// sortedParts are the transaction's partitions, sorted.
func (m *txnMeta) sortedParts() []TopicPartition {
	out := make([]TopicPartition, 0, len(m.parts))
	for tp := range m.parts {
		out = append(out, tp)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Topic != out[j].Topic {
			return out[i].Topic < out[j].Topic
		}
		return out[i].Partition < out[j].Partition
	})
	return out
}

// NewTxns returns a transaction coordinator that leads no partition yet.
// ids hands out producer IDs; markers writes transaction markers.
func NewTxns(cfg TxnConfig, log zerolog.Logger, ids func() (int64, error), markers Markers) (*Txns, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Decompressor == nil {
		cfg.Decompressor = kgo.DefaultDecompressor()
	}
	t := &Txns{cfg: cfg, log: log, markers: markers, ids: ids, stop: make(chan struct{})}
	for i := range cfg.Partitions {
		t.shards = append(t.shards, &txnShard{id: i, txns: make(map[string]*txnMeta)})
	}
	return t, nil
}

// Start begins aborting timed-out transactions and expiring idle IDs.
func (t *Txns) Start() { t.goFunc(t.checkLoop) }

// Close stops serving every partition and waits for the work in flight.
func (t *Txns) Close() error {
	t.once.Do(func() {
		t.mu.Lock()
		t.closing = true
		t.mu.Unlock()
		close(t.stop)
		for _, s := range t.shards {
			t.Resign(s.id)
		}
		t.wg.Wait()
	})
	return nil
}

func (t *Txns) goFunc(f func()) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closing {
		return false
	}
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		f()
	}()
	return true
}

// Partitions is the number of __transaction_state partitions.
func (t *Txns) Partitions() int32 { return t.cfg.Partitions }

// PartitionFor is the __transaction_state partition of a transactional ID,
// computed as Kafka does: Utils.abs(transactionalId.hashCode) % partitions,
// where Utils.abs is the absolute value and 0 for the least int32.
func (t *Txns) PartitionFor(id string) int32 {
	h := javaStringHash(id)
	switch {
	case h == math.MinInt32:
		h = 0
	case h < 0:
		h = -h
	}
	return h % t.cfg.Partitions
}

// Elect makes this coordinator the leader of partition id, whose log is
// p: it replays p and then serves its transactions, finishing those that
// were being committed or aborted. Until then their requests get
// COORDINATOR_LOAD_IN_PROGRESS.
func (t *Txns) Elect(id int32, p partition.Partition) {
	if id < 0 || int(id) >= len(t.shards) {
		t.log.Error().Int32("partition", id).Int32("partitions", t.cfg.Partitions).Msg("a __transaction_state partition beyond the configured count is not served")
		return
	}
	s := t.shards[id]
	s.mu.Lock()
	s.epoch++
	epoch := s.epoch
	if s.cancel != nil {
		s.cancel()
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.state, s.p, s.txns = shardLoading, p, make(map[string]*txnMeta)
	s.coordEpoch = p.Offsets().LeaderEpoch
	s.mu.Unlock()
	if !t.goFunc(func() { t.load(s, epoch, p) }) {
		t.Resign(id)
	}
}

// Resign stops serving partition id: waiting requests get NOT_COORDINATOR,
// marker rounds in flight stop.
func (t *Txns) Resign(id int32) {
	if id < 0 || int(id) >= len(t.shards) {
		return
	}
	s := t.shards[id]
	s.mu.Lock()
	s.epoch++
	if s.cancel != nil {
		s.cancel()
		s.cancel = nil
	}
	for _, m := range s.txns {
		for _, done := range m.ended {
			done(-1, -1, ErrNotCoordinator)
		}
		for _, a := range m.addQueue {
			a.done(ErrNotCoordinator)
		}
		m.ended, m.addQueue = nil, nil
	}
	s.state, s.p, s.txns = shardUnowned, nil, make(map[string]*txnMeta)
	s.mu.Unlock()
}

// load replays a partition and installs its transactions.
func (t *Txns) load(s *txnShard, epoch uint64, p partition.Partition) {
	start := time.Now()
	loaded, err := replayTxns(p, t.cfg.Decompressor)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.epoch != epoch {
		return
	}
	if err != nil {
		t.log.Error().Err(err).Int32("partition", s.id).Msg("loading transaction state partition failed")
		s.state = shardFailed
		return
	}
	s.txns = loaded
	s.state = shardLeading
	unfinished := 0
	for _, m := range s.txns {
		if m.decided() {
			unfinished++
			t.completeLocked(s, m)
		}
	}
	ev := t.log.Debug()
	if len(loaded) > 0 {
		ev = t.log.Info()
	}
	ev.Int32("partition", s.id).Int("transactional_ids", len(loaded)).Int("completing", unfinished).
		Dur("took", time.Since(start)).Msg("transaction state partition loaded")
}

// shardFor returns the leading shard of a transactional ID, or why there
// is none; s.mu is held on success.
func (t *Txns) shardFor(id string) (*txnShard, error) {
	if id == "" {
		return nil, fmt.Errorf("%w: empty transactional ID", kerr.InvalidRequest)
	}
	s := t.shards[t.PartitionFor(id)]
	s.mu.Lock()
	switch s.state {
	case shardLoading:
		s.mu.Unlock()
		return nil, ErrLoadInProgress
	case shardUnowned:
		s.mu.Unlock()
		return nil, ErrNotCoordinator
	case shardFailed:
		s.mu.Unlock()
		return nil, ErrCoordinatorNotAvailable
	}
	return s, nil
}

// write makes next the state of its transactional ID once its record is
// durable, then calls then with nil; or then with the error. The ID is
// busy meanwhile. s.mu is held; then runs with it held.
func (t *Txns) writeLocked(s *txnShard, next *txnMeta, then func(error)) {
	cur := s.txns[next.id]
	if cur == nil {
		cur = &txnMeta{id: next.id, pid: -1, nextPID: -1, state: kmsg.TransactionStateDead}
		s.txns[next.id] = cur
	}
	cur.busy = true
	epoch, p := s.epoch, s.p
	var rec kmsg.Record
	if next.state == kmsg.TransactionStateDead {
		rec = txnTombstone(next.id)
	} else {
		rec = txnRecord(next)
	}
	b := encodeBatch([]kmsg.Record{rec}, time.Now())
	h, err := partition.ParseHeader(b)
	if err != nil {
		cur.busy = false
		then(fmt.Errorf("%w: %w", ErrCoordinatorNotAvailable, err))
		t.drainAddsLocked(s, next.id)
		return
	}
	// Appended outside s.mu: a closed store answers on the caller's
	// goroutine, and the answer takes s.mu.
	started := t.goFunc(func() {
		p.Append(b, h, partition.AppendOptions{Acks: partition.AcksAll}, func(res partition.AppendResult) {
			s.mu.Lock()
			defer s.mu.Unlock()
			t.written(s, epoch, next, res.Err, then)
		})
	})
	if !started {
		cur.busy = false
		then(ErrNotCoordinator)
		t.drainAddsLocked(s, next.id)
	}
}

// written applies a write of next that ended with err (see writeLocked).
// s.mu is held.
func (t *Txns) written(s *txnShard, epoch uint64, next *txnMeta, err error, then func(error)) {
	if s.epoch != epoch {
		then(ErrNotCoordinator)
		return
	}
	cur := s.txns[next.id]
	if err != nil {
		if cur != nil {
			cur.busy = false
			if cur.state == kmsg.TransactionStateDead && cur.pid < 0 {
				delete(s.txns, next.id)
			}
		}
		code := ErrCoordinatorNotAvailable
		if errors.Is(err, partition.ErrNotLeader) || errors.Is(err, partition.ErrClosed) {
			code = ErrNotCoordinator
		}
		then(fmt.Errorf("%w: writing transaction state: %w", code, err))
		t.drainAddsLocked(s, next.id)
		return
	}
	var ended []endWaiter
	var queued []queuedAdd
	if cur != nil {
		ended, queued = cur.ended, cur.addQueue
	}
	if next.state == kmsg.TransactionStateDead {
		delete(s.txns, next.id)
		for _, a := range queued {
			a.done(ErrInvalidProducerIDMap)
		}
	} else {
		n := next.clone()
		n.ended, n.addQueue = ended, queued
		s.txns[next.id] = n
	}
	then(nil)
	t.drainAddsLocked(s, next.id)
}

// drainAddsLocked starts the AddPartitions that waited for a write of
// transactional ID id, once nothing else of it is in flight.
func (t *Txns) drainAddsLocked(s *txnShard, id string) {
	m := s.txns[id]
	if m == nil || m.busy || len(m.addQueue) == 0 {
		return
	}
	q := m.addQueue
	m.addQueue = nil
	t.addLocked(s, m, q)
}

// InitProducerIDRequest is an InitProducerId with a transactional ID.
type InitProducerIDRequest struct {
	TransactionalID string
	Timeout         time.Duration
	// ProducerID and Epoch are the producer's current ones (KIP-360), or
	// -1 for a new producer.
	ProducerID int64
	Epoch      int16
}

// InitProducerID gives the transactional ID's producer its ID and a new
// epoch, fencing any older producer of the ID. An open transaction is
// aborted first; the request then gets CONCURRENT_TRANSACTIONS and is
// retried by the client.
func (t *Txns) InitProducerID(req InitProducerIDRequest, done func(pid int64, epoch int16, err error)) {
	t.initProducerID(req, -1, done)
}

// initProducerID is InitProducerID with newID, a producer ID allocated
// for it (-1 for none yet): allocating may wait for the cluster metadata,
// which must not happen under a shard's lock.
func (t *Txns) initProducerID(req InitProducerIDRequest, newID int64, done func(pid int64, epoch int16, err error)) {
	fail := func(err error) { done(-1, -1, err) }
	allocate := func() {
		id, err := t.ids()
		if err != nil {
			fail(fmt.Errorf("%w: allocating a producer ID: %w", ErrCoordinatorNotAvailable, err))
			return
		}
		t.initProducerID(req, id, done)
	}
	if req.Timeout <= 0 || req.Timeout > t.cfg.MaxTimeout {
		fail(fmt.Errorf("%w: %v is outside (0, %v]", ErrInvalidTxnTimeout, req.Timeout, t.cfg.MaxTimeout))
		return
	}
	s, err := t.shardFor(req.TransactionalID)
	if err != nil {
		fail(err)
		return
	}
	now := time.Now()
	m := s.txns[req.TransactionalID]
	needID := m == nil || (!m.busy && m.epoch >= math.MaxInt16-1)
	if needID && newID < 0 {
		s.mu.Unlock()
		allocate()
		return
	}
	defer s.mu.Unlock()
	if m == nil {
		next := &txnMeta{id: req.TransactionalID, pid: newID, epoch: 0, lastPID: -1, lastEpoch: -1, nextPID: -1, timeout: req.Timeout,
			state: kmsg.TransactionStateEmpty, parts: map[TopicPartition]struct{}{}, updated: now}
		t.writeLocked(s, next, func(err error) {
			if err != nil {
				fail(err)
				return
			}
			done(next.pid, next.epoch, nil)
		})
		return
	}
	if m.busy {
		fail(ErrConcurrentTransactions)
		return
	}
	if req.ProducerID >= 0 && req.ProducerID != m.pid && req.ProducerID != m.lastPID {
		fail(fmt.Errorf("%w: producer %d is not the transactional ID's (%d)", ErrProducerFenced, req.ProducerID, m.pid))
		return
	}
	switch m.state {
	case kmsg.TransactionStatePrepareCommit, kmsg.TransactionStatePrepareAbort:
		fail(ErrConcurrentTransactions)
		return
	case kmsg.TransactionStateOngoing:
		// Fence the producer that left it open and abort it; the client
		// retries once the abort is complete.
		t.abortLocked(s, m, now, "a producer of the transactional ID started again")
		fail(ErrConcurrentTransactions)
		return
	}
	if req.ProducerID >= 0 {
		// KIP-360: the producer names the ID and epoch it has. Its
		// current one is bumped; a retry of a bump already made gets the
		// same answer; any other is an older producer.
		switch {
		case req.ProducerID == m.pid && req.Epoch == m.epoch:
		case req.ProducerID == m.pid && req.Epoch == m.lastEpoch, req.ProducerID == m.lastPID && m.lastPID >= 0:
			done(m.pid, m.epoch, nil)
			return
		default:
			fail(fmt.Errorf("%w: producer %d epoch %d, current %d epoch %d", ErrProducerFenced, req.ProducerID, req.Epoch, m.pid, m.epoch))
			return
		}
	}
	next := m.clone()
	next.lastPID, next.lastEpoch = -1, m.epoch
	if m.epoch >= math.MaxInt16-1 {
		if newID < 0 {
			fail(ErrConcurrentTransactions) // the ID changed meanwhile: retried
			return
		}
		next.lastPID, next.pid, next.epoch = m.pid, newID, 0
	} else {
		next.epoch = m.epoch + 1
	}
	next.timeout, next.state, next.parts, next.updated = req.Timeout, kmsg.TransactionStateEmpty, map[TopicPartition]struct{}{}, now
	t.writeLocked(s, next, func(err error) {
		if err != nil {
			fail(err)
			return
		}
		done(next.pid, next.epoch, nil)
	})
}

// checkProducer checks that pid at epoch is the ID's current
// producer.
func checkProducer(m *txnMeta, pid int64, epoch int16) error {
	switch {
	case m == nil || m.pid != pid:
		return ErrInvalidProducerIDMap
	case epoch != m.epoch:
		return fmt.Errorf("%w: epoch %d, current %d", ErrProducerFenced, epoch, m.epoch)
	}
	return nil
}

// AddPartitions adds partitions to the producer's transaction, starting
// it if none is open.
func (t *Txns) AddPartitions(id string, pid int64, epoch int16, parts []TopicPartition, done func(error)) {
	s, err := t.shardFor(id)
	if err != nil {
		done(err)
		return
	}
	defer s.mu.Unlock()
	t.addLocked(s, s.txns[id], []queuedAdd{{pid: pid, epoch: epoch, parts: parts, done: done}})
}

// queuedAdd is an AddPartitions waiting for its transactional ID's write
// in flight.
type queuedAdd struct {
	pid   int64
	epoch int16
	parts []TopicPartition
	done  func(error)
}

// addLocked adds the partitions of adds to m's transaction with one write.
// Adds that come while another write of m is in flight (a producer's
// requests to several partitions' leaders arrive together) wait for it
// rather than fail.
func (t *Txns) addLocked(s *txnShard, m *txnMeta, adds []queuedAdd) {
	var ok []queuedAdd
	for _, a := range adds {
		if err := checkProducer(m, a.pid, a.epoch); err != nil {
			a.done(err)
			continue
		}
		switch {
		case m.decided() && m.completing:
			m.addQueue = append(m.addQueue, a)
		case m.decided():
			a.done(ErrConcurrentTransactions)
		case m.state == kmsg.TransactionStateDead || m.state == kmsg.TransactionStatePrepareEpochFence:
			a.done(ErrInvalidTxnState)
		case m.busy:
			m.addQueue = append(m.addQueue, a)
		default:
			ok = append(ok, a)
		}
	}
	if len(ok) == 0 {
		return
	}
	now := time.Now()
	next := m.clone()
	if m.state != kmsg.TransactionStateOngoing {
		next.parts, next.start = map[TopicPartition]struct{}{}, now
	}
	added := false
	for _, a := range ok {
		for _, tp := range a.parts {
			if _, in := next.parts[tp]; !in {
				next.parts[tp] = struct{}{}
				added = true
			}
		}
	}
	if !added && m.state == kmsg.TransactionStateOngoing {
		for _, a := range ok {
			a.done(nil)
		}
		return
	}
	next.state, next.updated = kmsg.TransactionStateOngoing, now
	t.writeLocked(s, next, func(err error) {
		for _, a := range ok {
			a.done(err)
		}
	})
}

// AddOffsets adds the offsets partition of group to the producer's
// transaction, for offsets it commits with TxnOffsetCommit.
func (t *Txns) AddOffsets(id string, pid int64, epoch int16, group string, done func(error)) {
	tp := TopicPartition{Topic: OffsetsTopic, Partition: PartitionFor(group, t.cfg.OffsetsPartitions)}
	t.AddPartitions(id, pid, epoch, []TopicPartition{tp}, done)
}

// EndTxn commits or aborts the producer's transaction; done is called
// once its markers are written and the completion is durable.
func (t *Txns) EndTxn(id string, pid int64, epoch int16, commit bool, done func(error)) {
	s, err := t.shardFor(id)
	if err != nil {
		done(err)
		return
	}
	defer s.mu.Unlock()
	m := s.txns[id]
	if err := checkProducer(m, pid, epoch); err != nil {
		done(err)
		return
	}
	switch m.state {
	case kmsg.TransactionStateCompleteCommit:
		if commit && !m.busy {
			done(nil) // a retry of the commit that completed
		} else {
			done(ErrInvalidTxnState)
		}
		return
	case kmsg.TransactionStateCompleteAbort:
		if !commit && !m.busy {
			done(nil)
		} else {
			done(ErrInvalidTxnState)
		}
		return
	case kmsg.TransactionStatePrepareCommit:
		if commit {
			m.ended = append(m.ended, errOnly(done)) // a retry: answered with the first
		} else {
			done(ErrInvalidTxnState)
		}
		return
	case kmsg.TransactionStatePrepareAbort:
		if !commit {
			m.ended = append(m.ended, errOnly(done))
		} else {
			done(ErrInvalidTxnState)
		}
		return
	case kmsg.TransactionStateOngoing:
	default:
		done(ErrInvalidTxnState)
		return
	}
	if m.busy {
		done(ErrConcurrentTransactions)
		return
	}
	next := m.clone()
	next.state, next.updated = kmsg.TransactionStatePrepareAbort, time.Now()
	if commit {
		next.state = kmsg.TransactionStatePrepareCommit
	}
	t.prepareLocked(s, m, next, errOnly(done))
}

// prepareLocked writes next, m's decision to commit or abort, and then
// completes it; done is answered with the completion.
func (t *Txns) prepareLocked(s *txnShard, m *txnMeta, next *txnMeta, done endWaiter) {
	m.ended = append(m.ended, done)
	id := m.id
	t.writeLocked(s, next, func(err error) {
		cur := s.txns[id]
		if err != nil {
			if cur != nil {
				t.answerEndedLocked(cur, err)
			}
			return
		}
		t.completeLocked(s, cur)
	})
}

// answerEndedLocked answers the EndTxn requests waiting on m.
func (t *Txns) answerEndedLocked(m *txnMeta, err error) {
	for _, done := range m.ended {
		if err != nil {
			done(-1, -1, err)
		} else {
			done(m.pid, m.epoch, nil)
		}
	}
	m.ended = nil
}

// abortLocked aborts m's ongoing transaction with a bumped epoch, which
// fences its producer.
func (t *Txns) abortLocked(s *txnShard, m *txnMeta, now time.Time, why string) {
	next := m.clone()
	next.lastEpoch, next.epoch = m.epoch, m.epoch+1
	next.state, next.updated = kmsg.TransactionStatePrepareAbort, now
	t.log.Info().Str("transactional_id", m.id).Int64("producer_id", m.pid).Int16("epoch", next.epoch).Str("reason", why).Msg("aborting transaction")
	t.writeLocked(s, next, func(err error) {
		if err != nil {
			t.log.Warn().Err(err).Str("transactional_id", m.id).Msg("aborting transaction: writing the decision failed; retried later")
			return
		}
		if cur := s.txns[m.id]; cur != nil {
			t.completeLocked(s, cur)
		}
	})
}

// completeLocked writes the markers of m's decided transaction and then
// its completion, in the background; m stays busy meanwhile.
func (t *Txns) completeLocked(s *txnShard, m *txnMeta) {
	m.busy = true
	commit := m.state == kmsg.TransactionStatePrepareCommit
	req := MarkerRequest{ProducerID: m.pid, Epoch: m.epoch, Commit: commit, CoordinatorEpoch: s.coordEpoch, Partitions: m.sortedParts()}
	ctx, epoch, id := s.ctx, s.epoch, m.id
	started := t.goFunc(func() {
		err := t.markers.WriteMarkers(ctx, req)
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.epoch != epoch {
			return // resigned: Resign answered the waiters
		}
		cur := s.txns[id]
		if cur == nil {
			return
		}
		if err != nil {
			cur.busy = false
			t.log.Warn().Err(err).Str("transactional_id", id).Msg("writing transaction markers failed; retried later")
			t.answerEndedLocked(cur, fmt.Errorf("%w: %w", ErrCoordinatorNotAvailable, err))
			t.drainAddsLocked(s, id)
			return
		}
		next := cur.clone()
		next.state = kmsg.TransactionStateCompleteAbort
		if commit {
			next.state = kmsg.TransactionStateCompleteCommit
		}
		next.parts, next.updated = map[TopicPartition]struct{}{}, time.Now()
		if cur.nextPID >= 0 {
			next.lastPID, next.lastEpoch, next.pid, next.epoch, next.nextPID = cur.pid, cur.epoch, cur.nextPID, 0, -1
		}
		// With the markers durable the transaction is over for every
		// reader: EndTxn is answered now, with the producer ID and epoch
		// the completion records, while the completion is written.
		for _, done := range cur.ended {
			done(next.pid, next.epoch, nil)
		}
		cur.ended, cur.completing = nil, true
		t.writeLocked(s, next, func(err error) {
			cur := s.txns[id]
			if cur == nil {
				return
			}
			if err != nil {
				// The markers are written: the client may go on, and the
				// completion is written again later.
				cur.busy, cur.completing = false, false
				t.log.Warn().Err(err).Str("transactional_id", id).Msg("writing transaction completion failed; retried later")
			}
			t.answerEndedLocked(cur, nil) // retries that came meanwhile
		})
	})
	if !started {
		m.busy = false
		t.answerEndedLocked(m, ErrNotCoordinator)
	}
}

// checkLoop aborts timed-out transactions, finishes decided ones left
// unfinished and removes expired IDs.
func (t *Txns) checkLoop() {
	tick := time.NewTicker(t.cfg.CheckInterval)
	defer tick.Stop()
	for {
		select {
		case <-t.stop:
			return
		case <-tick.C:
		}
		now := time.Now()
		for _, s := range t.shards {
			s.mu.Lock()
			if s.state == shardLeading {
				t.checkShardLocked(s, now)
			}
			s.mu.Unlock()
		}
	}
}

func (t *Txns) checkShardLocked(s *txnShard, now time.Time) {
	for _, m := range s.txns {
		if m.busy {
			continue
		}
		switch m.state {
		case kmsg.TransactionStateOngoing:
			if now.Sub(m.start) > m.timeout {
				t.abortLocked(s, m, now, "the transaction timed out")
			}
		case kmsg.TransactionStatePrepareCommit, kmsg.TransactionStatePrepareAbort:
			t.completeLocked(s, m)
		case kmsg.TransactionStateEmpty, kmsg.TransactionStateCompleteCommit, kmsg.TransactionStateCompleteAbort:
			if now.Sub(m.updated) > t.cfg.IDExpiration {
				next := m.clone()
				next.state = kmsg.TransactionStateDead
				id := m.id
				t.writeLocked(s, next, func(err error) {
					if err == nil {
						t.log.Debug().Str("transactional_id", id).Msg("transactional ID expired")
					}
				})
			}
		}
	}
}

// TxnDescription is one transaction as DescribeTransactions and
// ListTransactions show it.
type TxnDescription struct {
	TransactionalID string
	ProducerID      int64
	Epoch           int16
	State           kmsg.TransactionState
	Timeout         time.Duration
	Start           time.Time // zero unless ongoing
	Partitions      []TopicPartition
}

func describe(m *txnMeta) TxnDescription {
	d := TxnDescription{TransactionalID: m.id, ProducerID: m.pid, Epoch: m.epoch, State: m.state, Timeout: m.timeout, Partitions: m.sortedParts()}
	if m.state == kmsg.TransactionStateOngoing || m.decided() {
		d.Start = m.start
	}
	return d
}

// Describe returns the state of a transactional ID; ErrTransactionalIDNotFound when
// the coordinator has none.
func (t *Txns) Describe(id string) (TxnDescription, error) {
	s, err := t.shardFor(id)
	if err != nil {
		return TxnDescription{}, err
	}
	defer s.mu.Unlock()
	m := s.txns[id]
	if m == nil || m.pid < 0 {
		return TxnDescription{}, kerr.TransactionalIDNotFound
	}
	return describe(m), nil
}

// List returns every transaction of the partitions this coordinator
// leads, and whether some partition is still loading.
func (t *Txns) List() (out []TxnDescription, loading bool) {
	for _, s := range t.shards {
		s.mu.Lock()
		switch s.state {
		case shardLoading:
			loading = true
		case shardLeading:
			for _, m := range s.txns {
				if m.pid >= 0 {
					out = append(out, describe(m))
				}
			}
		}
		s.mu.Unlock()
	}
	sort.Slice(out, func(i, j int) bool { return out[i].TransactionalID < out[j].TransactionalID })
	return out, loading
}

// Verify reports, for each of parts, whether it belongs to the producer's
// open transaction (nil) or not (TRANSACTION_ABORTABLE): a partition
// leader asks before it takes a transactional batch (KIP-890), so that a
// late batch of an ended transaction never lands after its marker.
func (t *Txns) Verify(id string, pid int64, epoch int16, parts []TopicPartition) (map[TopicPartition]error, error) {
	s, err := t.shardFor(id)
	if err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	m := s.txns[id]
	if err := checkProducer(m, pid, epoch); err != nil {
		return nil, err
	}
	// Once the markers are durable (completing), no partition is in a
	// transaction: a batch then is a late one of the ended transaction.
	if m.decided() && !m.completing {
		return nil, ErrConcurrentTransactions
	}
	out := make(map[TopicPartition]error, len(parts))
	for _, tp := range parts {
		if _, ok := m.parts[tp]; !ok || m.state != kmsg.TransactionStateOngoing {
			out[tp] = kerr.TransactionAbortable
		} else {
			out[tp] = nil
		}
	}
	return out, nil
}

// EndTxnV2 ends the producer's transaction as transactions version 2 does
// (KIP-890, EndTxn v5+): every end bumps the producer's epoch, which the
// markers carry, so that nothing of an older epoch lands after them; an
// abort with nothing open is allowed (and bumps the epoch too). done gets
// the producer ID and epoch the producer goes on with. A retry, from the
// epoch before the bump, gets the same answer.
func (t *Txns) EndTxnV2(id string, pid int64, epoch int16, commit bool, done func(pid int64, epoch int16, err error)) {
	t.endTxnV2(id, pid, epoch, commit, -1, done)
}

// endTxnV2 is EndTxnV2 with newID allocated for a producer whose epoch is
// exhausted (-1 for none yet; see initProducerID).
func (t *Txns) endTxnV2(id string, pid int64, epoch int16, commit bool, newID int64, done func(pid int64, epoch int16, err error)) {
	fail := func(err error) { done(-1, -1, err) }
	s, err := t.shardFor(id)
	if err != nil {
		fail(err)
		return
	}
	m := s.txns[id]
	if m == nil || (pid != m.pid && pid != m.lastPID) {
		s.mu.Unlock()
		fail(ErrInvalidProducerIDMap)
		return
	}
	current := pid == m.pid && epoch == m.epoch
	retry := m.lastEpoch >= 0 && epoch == m.lastEpoch && (pid == m.pid || pid == m.lastPID && m.lastPID >= 0)
	exhausted := m.epoch >= math.MaxInt16-1
	if current && exhausted && newID < 0 && !m.busy {
		s.mu.Unlock()
		id2, err := t.ids()
		if err != nil {
			fail(fmt.Errorf("%w: allocating a producer ID: %w", ErrCoordinatorNotAvailable, err))
			return
		}
		t.endTxnV2(id, pid, epoch, commit, id2, done)
		return
	}
	defer s.mu.Unlock()
	if !current && !retry {
		fail(fmt.Errorf("%w: producer %d epoch %d, current %d epoch %d", ErrProducerFenced, pid, epoch, m.pid, m.epoch))
		return
	}
	bump := func() {
		next := m.clone()
		next.lastEpoch, next.epoch, next.updated = m.epoch, m.epoch+1, time.Now()
		if exhausted {
			next.nextPID = newID
		}
		next.state = kmsg.TransactionStatePrepareAbort
		if commit {
			next.state = kmsg.TransactionStatePrepareCommit
		}
		if m.state != kmsg.TransactionStateOngoing {
			next.parts = map[TopicPartition]struct{}{}
		}
		t.prepareLocked(s, m, next, done)
	}
	switch m.state {
	case kmsg.TransactionStateOngoing:
		if !current {
			fail(fmt.Errorf("%w: a retry of an end while the transaction is open", ErrProducerFenced))
			return
		}
	case kmsg.TransactionStateEmpty, kmsg.TransactionStateCompleteCommit, kmsg.TransactionStateCompleteAbort:
		completed := m.state == kmsg.TransactionStateCompleteCommit && commit || m.state == kmsg.TransactionStateCompleteAbort && !commit
		switch {
		case retry && completed && !m.busy:
			done(m.pid, m.epoch, nil)
		case retry && m.state == kmsg.TransactionStateEmpty:
			fail(ErrProducerFenced)
		case current && !commit && !m.busy:
			bump() // an abort with nothing open
		case m.busy:
			fail(ErrConcurrentTransactions)
		default:
			fail(ErrInvalidTxnState)
		}
		return
	case kmsg.TransactionStatePrepareCommit, kmsg.TransactionStatePrepareAbort:
		switch {
		case retry && (m.state == kmsg.TransactionStatePrepareCommit) == commit:
			m.ended = append(m.ended, done)
		case current && m.completing:
			fail(ErrConcurrentTransactions) // the next transaction's end, before the last one's completion is written
		default:
			fail(ErrInvalidTxnState)
		}
		return
	default:
		fail(ErrInvalidTxnState)
		return
	}
	if m.busy {
		fail(ErrConcurrentTransactions)
		return
	}
	bump()
}
