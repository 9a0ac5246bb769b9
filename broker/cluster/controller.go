package cluster

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"github.com/pubg1/pubg1/broker/raftlog"
	"github.com/pubg1/pubg1/broker/raftmux"
	"github.com/pubg1/pubg1/broker/storage"
	"github.com/rs/zerolog"
)

// Raft group names used on the mux.
const (
	metadataGroup = "__cluster_metadata"
	rpcGroup      = "__cluster_rpc"
	maxRPCBytes   = 16 << 20
	// forwardAttempt bounds one forwarded proposal.
	forwardAttempt = 3 * time.Second
	// forwardCheck is how often a forwarded proposal checks that its
	// leader still leads and is up.
	forwardCheck = 20 * time.Millisecond
	// fenceAfter is how long the metadata leader goes without reaching a
	// broker before it fences it (Kafka's broker.session.timeout.ms).
	fenceAfter = 2 * time.Second
)

// Peer is one broker of the cluster.
type Peer struct {
	ID   int32
	Addr string // its Kafka address, which also carries Raft traffic
}

// Config configures a Controller.
type Config struct {
	NodeID  int32
	Peers   []Peer // every broker, this one included
	DataDir string // for Raft snapshots
	Store   storage.Store
	Mux     *raftmux.Mux
	Logger  zerolog.Logger
	// Tune adjusts Raft timeouts for every group of the cluster.
	Tune func(*raft.Config)
}

// Controller is this broker's member of the metadata Raft group.
type Controller struct {
	cfg   Config
	self  raft.ServerID
	rc    raft.Config // every run's
	logs  *raftlog.Store
	snaps raft.SnapshotStore
	cur   atomic.Pointer[run]
	runMu sync.Mutex // held to replace or stop the run
	rpc   *raftmux.Layer
	state atomic.Pointer[State]
	// applied is the index of the last entry the FSM has finished with
	// (Raft's own AppliedIndex moves before the FSM has run).
	applied atomic.Uint64
	// replayed is the last entry applied before the run was replaced: a
	// new run applies the log again, and the FSM skips what it has.
	replayed atomic.Uint64
	// restoring is set while a replacing run starts: the snapshot it
	// restores is older than the state the FSM has.
	restoring atomic.Bool

	mu       sync.Mutex
	watchers []func(*State)
	closed   bool
	stop     chan struct{}
	wg       sync.WaitGroup
}

// run is one instance of this broker's Raft member of the metadata group,
// with its transport and the goroutines that watch it; an unclean
// election replaces it (see forceVoters).
type run struct {
	r     *raft.Raft
	trans *raftmux.Transport
	stop  chan struct{} // stops the goroutines below
	wg    sync.WaitGroup
}

// Start joins (bootstrapping, the first time) the metadata group.
func Start(cfg Config) (*Controller, error) {
	c := &Controller{cfg: cfg, stop: make(chan struct{}), self: raft.ServerID(strconv.Itoa(int(cfg.NodeID)))}
	c.state.Store(emptyState())
	var err error
	if c.logs, err = raftlog.Open(cfg.Store, metadataGroup); err != nil {
		return nil, err
	}
	if c.snaps, err = raft.NewFileSnapshotStoreWithLogger(filepath.Join(cfg.DataDir, "raft", metadataGroup), 2, hclog.NewNullLogger()); err != nil {
		return nil, fmt.Errorf("cluster: snapshot store: %w", err)
	}
	rc := raft.DefaultConfig()
	rc.LocalID = c.self
	rc.Logger = raftmux.Logger(cfg.Logger.With().Str("group", metadataGroup).Logger())
	if cfg.Tune != nil {
		cfg.Tune(rc)
	}
	// One small group whose followers must learn of commits quickly (a
	// restarted broker serves clients only once it has caught up); besides,
	// every command is followed by a barrier that carries its commit.
	rc.CommitTimeout = 100 * time.Millisecond
	c.rc = *rc
	has, err := raft.HasExistingState(c.logs, c.logs, c.snaps)
	if err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	// A member without state may be a lost disk of a running cluster: it
	// votes and leads only once it has caught up, even if it restarts
	// before then: the mark is recorded before the group is bootstrapped.
	pending, err := c.logs.CatchingUp()
	if err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	fence := len(cfg.Peers) > 1 && (pending || !has)
	if fence && !pending {
		if err := c.logs.SetCatchingUp(true); err != nil {
			return nil, fmt.Errorf("cluster: %w", err)
		}
	}
	var boot *raft.Configuration
	if !has {
		boot = &raft.Configuration{Servers: Servers(cfg.Peers)}
	}
	if fence && has {
		cfg.Logger.Warn().Msg("metadata member restarted before it caught up after starting without state: it takes no part in elections until it has")
	}
	ru, err := c.startRun(fence, boot)
	if err != nil {
		return nil, err
	}
	if err := c.checkMember(c.self); err != nil {
		_ = c.stopRun(ru)
		return nil, err
	}
	if c.rpc, err = cfg.Mux.Layer(rpcGroup); err != nil {
		_ = c.stopRun(ru)
		return nil, err
	}
	c.wg.Add(1)
	go c.serveRPC()
	return c, nil
}

// startRun starts a Raft member of the metadata group on the log and
// snapshots the store holds, bootstrapped with boot if it is set, fenced
// (see raftmux.Transport.Fence) if fence is, and makes it the current run.
func (c *Controller) startRun(fence bool, boot *raft.Configuration) (*run, error) {
	layer, err := c.cfg.Mux.Layer(metadataGroup)
	if err != nil {
		return nil, err
	}
	// The mux's transport: heartbeats share the broker-wide batches, and
	// a failed append waits for the peer instead of letting Raft back off
	// (a restarted broker would otherwise wait seconds to hear of it).
	ru := &run{trans: layer.NewTransport(3, 10*time.Second), stop: make(chan struct{})}
	rc := c.rc
	if boot != nil {
		if err := raft.BootstrapCluster(&rc, c.logs, c.logs, c.snaps, ru.trans, *boot); err != nil {
			_ = ru.trans.Close()
			return nil, fmt.Errorf("cluster: bootstrapping metadata: %w", err)
		}
	}
	if fence {
		log := c.cfg.Logger
		ru.trans.Fence(c.logs, false, func(reason string) {
			if err := c.logs.SetCatchingUp(false); err != nil {
				log.Warn().Err(err).Msg("metadata member's catch-up not recorded: it will catch up again after a restart")
			}
			log.Info().Str("reason", reason).Msg("metadata member takes part in elections again")
		})
	}
	if ru.r, err = raft.NewRaft(&rc, (*metaFSM)(c), c.logs, c.logs, c.snaps, ru.trans); err != nil {
		_ = ru.trans.Close()
		return nil, fmt.Errorf("cluster: starting metadata group: %w", err)
	}
	c.cur.Store(ru)
	ru.wg.Add(2)
	go c.watchPeers(ru)
	go func() {
		defer ru.wg.Done()
		ru.trans.KeepMembers(ru.r, c.self, c.cfg.Logger, nil, ru.stop)
	}()
	return ru, nil
}

// stopRun shuts ru down and waits for its goroutines.
func (c *Controller) stopRun(ru *run) error {
	close(ru.stop)
	ru.trans.StopWaiting() // replication may be waiting for a peer
	err := ru.r.Shutdown().Error()
	ru.wg.Wait()
	_ = ru.trans.Close()
	if err != nil {
		return fmt.Errorf("cluster: shutting down: %w", err)
	}
	return nil
}

// raft is the current run's Raft.
func (c *Controller) raft() *raft.Raft { return c.cur.Load().r }

// checkMember refuses a data directory whose metadata group does not have
// this broker as a voter: it belongs to another broker (Kafka refuses a
// node.id that differs from the one in meta.properties), and this one would
// wait forever for a leader.
func (c *Controller) checkMember(id raft.ServerID) error {
	f := c.raft().GetConfiguration()
	if err := f.Error(); err != nil {
		return fmt.Errorf("cluster: reading the metadata group's members: %w", err)
	}
	var ids []string
	for _, s := range f.Configuration().Servers {
		if s.ID == id {
			return nil
		}
		ids = append(ids, string(s.ID))
	}
	return fmt.Errorf("%w: the data directory %s belongs to broker %s of the metadata group, not to broker %s", ErrWrongBroker, c.cfg.DataDir, strings.Join(ids, ", "), id)
}

// watchPeers fences the brokers the metadata leader cannot reach and
// unfences them when they answer again. Only the leader heartbeats, so
// only the leader observes and proposes.
func (c *Controller) watchPeers(ru *run) {
	defer ru.wg.Done()
	ch := make(chan raft.Observation, 64)
	obs := raft.NewObserver(ch, false, func(o *raft.Observation) bool {
		switch o.Data.(type) {
		case raft.FailedHeartbeatObservation, raft.ResumedHeartbeatObservation:
			return true
		}
		return false
	})
	ru.r.RegisterObserver(obs)
	defer ru.r.DeregisterObserver(obs)
	life, stop := context.WithCancel(context.Background())
	defer stop()
	go func() {
		select {
		case <-ru.stop:
		case <-life.Done():
		}
		stop()
	}()
	// A broker fenced by an earlier leader is unfenced by the current
	// one once it answers: Raft reports a resumed heartbeat only to the
	// leader that saw it fail.
	check := time.NewTicker(fenceAfter / 4)
	defer check.Stop()
	for {
		var o raft.Observation
		select {
		case <-ru.stop:
			return
		case <-check.C:
			if id, ok := c.answeringFenced(ru); ok {
				c.applyFencing(life, UnfenceBrokerCommand(id))
			}
			continue
		case o = <-ch:
		}
		var cmd *Command
		switch d := o.Data.(type) {
		case raft.FailedHeartbeatObservation:
			id, err := strconv.Atoi(string(d.PeerID))
			if err == nil && time.Since(d.LastContact) >= fenceAfter && !c.State().Fenced[int32(id)] {
				cmd = FenceBrokerCommand(int32(id))
			}
		case raft.ResumedHeartbeatObservation:
			id, err := strconv.Atoi(string(d.PeerID))
			if err == nil && c.State().Fenced[int32(id)] {
				cmd = UnfenceBrokerCommand(int32(id))
			}
		}
		if cmd != nil {
			c.applyFencing(life, cmd)
		}
	}
}

// answeringFenced returns a fenced broker whose metadata member has
// answered this leader within fenceAfter.
func (c *Controller) answeringFenced(ru *run) (int32, bool) {
	if ru.r.State() != raft.Leader {
		return 0, false
	}
	fenced := c.State().Fenced
	for _, p := range c.cfg.Peers {
		if fenced[p.ID] && p.ID != c.cfg.NodeID && time.Since(ru.trans.Answered(raft.ServerAddress(p.Addr))) < fenceAfter {
			return p.ID, true
		}
	}
	return 0, false
}

// applyFencing proposes a fencing command as the metadata leader.
func (c *Controller) applyFencing(life context.Context, cmd *Command) {
	ctx, cancel := context.WithTimeout(life, forwardAttempt)
	res, err := c.applyLocal(ctx, cmd)
	cancel()
	if err == nil {
		err = res.Error()
	}
	if err != nil {
		c.cfg.Logger.Debug().Err(err).Str("command", cmd.Kind).Int32("broker", cmd.Leader).Msg("broker fencing not applied")
	} else {
		c.cfg.Logger.Info().Str("command", cmd.Kind).Int32("broker", cmd.Leader).Msg("broker fencing changed")
	}
}

// Servers turns peers into a Raft configuration, ordered by ID.
func Servers(peers []Peer) []raft.Server {
	out := make([]raft.Server, 0, len(peers))
	for _, p := range peers {
		out = append(out, raft.Server{ID: raft.ServerID(strconv.Itoa(int(p.ID))), Address: raft.ServerAddress(p.Addr)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// State is the latest applied metadata. It must not be modified.
func (c *Controller) State() *State { return c.state.Load() }

// Watch registers fn to be called with every new state, in order, from the
// goroutine that applies metadata; fn must not block for long.
func (c *Controller) Watch(fn func(*State)) {
	c.mu.Lock()
	c.watchers = append(c.watchers, fn)
	c.mu.Unlock()
	fn(c.State())
}

// HandOff moves the metadata leadership to another broker, if this one
// leads; it returns when the transfer is done or has failed.
func (c *Controller) HandOff() {
	if c.IsLeader() {
		_ = c.raft().LeadershipTransfer().Error()
	}
}

// IsLeader reports whether this broker leads the metadata group.
func (c *Controller) IsLeader() bool { return c.raft().State() == raft.Leader }

// Role reports this member's Raft state, the leader it knows ("" for
// none) and when it last heard from one.
func (c *Controller) Role() (raft.RaftState, raft.ServerID, time.Time) {
	r := c.raft()
	_, id := r.LeaderWithID()
	return r.State(), id, r.LastContact()
}

// Campaign makes this member, if it follows, stand for election at once
// (see raftmux.Transport.Campaign): the broker calls it when the failure
// detector finds the metadata leader's broker down, well before Raft's own
// heartbeat timeout would.
func (c *Controller) Campaign() error {
	ru := c.cur.Load()
	if !raftmux.Votes(ru.r, c.self) {
		return fmt.Errorf("cluster: campaigning as a non-voter since this broker lost its state: %w", raftmux.ErrFenced)
	}
	if err := ru.trans.Campaign(c.self); err != nil {
		return fmt.Errorf("cluster: campaigning: %w", err)
	}
	return nil
}

// ForgetStaleLeader makes this member, if it is a candidate that names a
// leader, a follower of its next term that knows none (see
// raftmux.Transport.Follow), and reports whether it did.
func (c *Controller) ForgetStaleLeader() (bool, error) {
	ru := c.cur.Load()
	if ru.r.State() != raft.Candidate {
		return false, nil
	}
	if _, id := ru.r.LeaderWithID(); id == "" {
		return false, nil
	}
	last, lastTerm := raftmux.LastEntry(ru.r)
	if err := ru.trans.Follow(c.self, ru.r.CurrentTerm(), last, lastTerm); err != nil {
		return false, fmt.Errorf("cluster: forgetting a stale leader: %w", err)
	}
	return true, nil
}

// Propose applies cmd through the metadata leader, forwarding it when this
// broker does not lead, and waits for this broker to have applied it.
func (c *Controller) Propose(ctx context.Context, cmd *Command) (Result, error) {
	for {
		res, err := c.proposeOnce(ctx, cmd)
		if err == nil {
			return res, nil
		}
		if !errors.Is(err, ErrNotLeader) {
			return Result{}, err
		}
		// No leader, or it changed: wait for the election.
		select {
		case <-ctx.Done():
			return Result{}, fmt.Errorf("cluster: proposing %s: %w", cmd.Kind, ctx.Err())
		case <-c.stop:
			return Result{}, ErrClosed
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (c *Controller) proposeOnce(ctx context.Context, cmd *Command) (Result, error) {
	if c.IsLeader() {
		return c.applyLocal(ctx, cmd)
	}
	addr, _ := c.raft().LeaderWithID()
	if addr == "" || c.cfg.Mux.PeerDown(addr) {
		// No leader, or one whose broker the failure detector found
		// down: its successor is being elected, or the leader is alive
		// but cut off from this broker alone (a bridge), which a broker
		// that reaches both can pass the command to.
		return c.relay(ctx, cmd)
	}
	// A leader that is gone but not yet replaced (a paused process keeps
	// its connections) must not hold the proposal for its whole deadline:
	// each attempt gets a few seconds, then the leader is looked up again.
	// Commands are safe to repeat (see apply).
	actx, cancel := context.WithTimeout(ctx, forwardAttempt)
	res, err := c.forward(actx, addr, cmd)
	cancel()
	if err != nil {
		return Result{}, err
	}
	return c.settle(ctx, res)
}

// settle turns the leader's answer to a forwarded or relayed command into
// the proposal's outcome and waits, until ctx ends, for this broker to
// have applied the change, so that a client that asks it next sees what
// it just did.
func (c *Controller) settle(ctx context.Context, res Result) (Result, error) {
	switch res.Code {
	case "not_leader":
		return Result{}, ErrNotLeader
	case "not_applied":
		// The leader's Raft did not take it: an error, not a result.
		return Result{}, res.Error()
	}
	for c.applied.Load() < res.Index {
		select {
		case <-ctx.Done():
			return res, nil // applied by the cluster; this copy lags
		case <-c.stop:
			return res, nil
		case <-time.After(2 * time.Millisecond):
		}
	}
	return res, nil
}

func (c *Controller) applyLocal(ctx context.Context, cmd *Command) (Result, error) {
	b, err := json.Marshal(cmd)
	if err != nil {
		return Result{}, fmt.Errorf("cluster: encoding command: %w", err)
	}
	timeout := 30 * time.Second
	if d, ok := ctx.Deadline(); ok {
		timeout = time.Until(d)
	}
	r := c.raft()
	f := r.Apply(b, timeout)
	if err := f.Error(); err != nil {
		// A run being replaced (an unclean election) leads no more.
		// So does one handing its leadership over.
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) || errors.Is(err, raft.ErrRaftShutdown) ||
			errors.Is(err, raft.ErrLeadershipTransferInProgress) {
			return Result{}, ErrNotLeader
		}
		return Result{}, fmt.Errorf("%w: applying %s: %w", ErrNotApplied, cmd.Kind, err)
	}
	// Followers learn of a commit with the next append; an idle leader
	// sends one only every CommitTimeout. A barrier is an append right
	// away that carries the new commit index, so every broker's metadata
	// is current at once without frequent idle appends.
	r.Barrier(time.Second)
	res, _ := f.Response().(Result)
	res.Index = f.Index()
	return res, nil
}

// forward sends cmd to the leader over the mux and reads its result. It
// gives up as soon as that leader is replaced or its broker is found down,
// rather than at its deadline, so that the proposal goes to the successor.
func (c *Controller) forward(ctx context.Context, addr raft.ServerAddress, cmd *Command) (Result, error) {
	conn, err := c.rpc.Dial(addr, 5*time.Second)
	if err != nil {
		return Result{}, fmt.Errorf("%w: %w", ErrNotLeader, err)
	}
	defer conn.Close()
	if d, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(d)
	} else {
		_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	}
	done := make(chan struct{})
	defer close(done)
	go func() {
		t := time.NewTicker(forwardCheck)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-c.stop:
			case <-t.C:
				if cur, _ := c.raft().LeaderWithID(); cur == addr && !c.cfg.Mux.PeerDown(addr) {
					continue
				}
			}
			_ = conn.SetDeadline(time.Now()) // fails the read below
			return
		}
	}()
	res, err := roundTrip(conn, cmd)
	if err != nil {
		return Result{}, fmt.Errorf("%w: %w", ErrNotLeader, err)
	}
	return res, nil
}

// cmdRelay asks a broker, over the mux, to forward the command it carries
// to its metadata leader; it is never applied.
const cmdRelay = "relay"

// relay passes cmd to the metadata leader through another broker, for a
// broker that does not reach the leader itself: each live peer in turn is
// asked to forward it to the leader it knows. A relayed command is waited
// for here as far as forwardAttempt allows: this broker, cut off from the
// leader, may not apply it until the cut heals.
func (c *Controller) relay(ctx context.Context, cmd *Command) (Result, error) {
	for _, p := range c.cfg.Peers {
		addr := raft.ServerAddress(p.Addr)
		if p.ID == c.cfg.NodeID || !c.cfg.Mux.PeerUp(addr) {
			continue
		}
		actx, cancel := context.WithTimeout(ctx, forwardAttempt)
		res, err := c.call(actx, addr, &Command{Kind: cmdRelay, Relayed: cmd})
		if err == nil {
			// Unreachable or leaderless peers are passed over.
			if res, err = c.settle(actx, res); !errors.Is(err, ErrNotLeader) {
				cancel()
				return res, err
			}
		}
		cancel()
		if ctx.Err() != nil {
			break
		}
	}
	return Result{}, ErrNotLeader
}

// cmdPeerView asks a broker which brokers it has heard from recently;
// it is never applied.
const cmdPeerView = "peer_view"

// peerHeardWithin is how recently a broker must have heard from another
// for its view to count that one as reached. The failure detector pings a
// peer silent for 500 ms, checking every 500 ms, so a live, reachable peer
// has answered within about a second; a frozen one has been silent for
// 1.5 s (the detector's DeadAfter) by the time another broker finds it
// down, and every broker stopped hearing from it at the same moment.
const peerHeardWithin = 1200 * time.Millisecond

// upPeers lists the other brokers this broker has heard from recently
// (peerHeardWithin).
func (c *Controller) upPeers() []int32 {
	var out []int32
	for _, p := range c.cfg.Peers {
		if p.ID != c.cfg.NodeID && c.cfg.Mux.PeerHeardWithin(raft.ServerAddress(p.Addr), peerHeardWithin) {
			out = append(out, p.ID)
		}
	}
	return out
}

// PeerView asks broker id which other brokers it has heard from recently
// (peerHeardWithin). Two brokers that cannot reach each other may both still reach a
// third: a broker that finds another down asks the others before it takes
// that broker for gone.
func (c *Controller) PeerView(ctx context.Context, id int32) ([]int32, error) {
	for _, p := range c.cfg.Peers {
		if p.ID == id {
			res, err := c.call(ctx, raft.ServerAddress(p.Addr), &Command{Kind: cmdPeerView})
			if err != nil {
				return nil, fmt.Errorf("cluster: asking broker %d for its view of the others: %w", id, err)
			}
			return res.Up, nil
		}
	}
	return nil, fmt.Errorf("cluster: no broker %d", id)
}

// call sends cmd to the broker at addr over the mux and reads the answer.
func (c *Controller) call(ctx context.Context, addr raft.ServerAddress, cmd *Command) (Result, error) {
	conn, err := c.rpc.Dial(addr, 2*time.Second)
	if err != nil {
		return Result{}, err
	}
	defer conn.Close()
	d, ok := ctx.Deadline()
	if !ok {
		d = time.Now().Add(30 * time.Second)
	}
	_ = conn.SetDeadline(d)
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	defer stop()
	return roundTrip(conn, cmd)
}

// serveRelay forwards a relayed command to this broker's metadata leader,
// or applies it when this broker leads.
func (c *Controller) serveRelay(cmd *Command) Result {
	if cmd == nil || cmd.Kind == cmdRelay || cmd.Kind == cmdUnfenceMember {
		return resultOf(fmt.Errorf("%w: nothing to relay", ErrBadCommand))
	}
	ctx, cancel := context.WithTimeout(context.Background(), forwardAttempt)
	defer cancel()
	if c.IsLeader() {
		r, err := c.applyLocal(ctx, cmd)
		if err != nil {
			return resultOf(err)
		}
		return r
	}
	addr, _ := c.raft().LeaderWithID()
	if addr == "" || c.cfg.Mux.PeerDown(addr) {
		return resultOf(ErrNotLeader)
	}
	r, err := c.forward(ctx, addr, cmd)
	if err != nil {
		return resultOf(err)
	}
	return r
}

// roundTrip sends cmd on conn and reads the answer.
func roundTrip(conn io.ReadWriter, cmd *Command) (Result, error) {
	if err := writeMsg(conn, cmd); err != nil {
		return Result{}, err
	}
	var res Result
	err := readMsg(conn, &res)
	return res, err
}

// serveRPC answers forwarded commands.
func (c *Controller) serveRPC() {
	defer c.wg.Done()
	for {
		conn, err := c.rpc.Accept()
		if err != nil {
			return
		}
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(60 * time.Second))
			var cmd Command
			if err := readMsg(conn, &cmd); err != nil {
				return
			}
			var res Result
			switch {
			case cmd.Kind == cmdUnfenceMember:
				c.unfenceMember()
			case cmd.Kind == cmdRelay:
				res = c.serveRelay(cmd.Relayed)
			case cmd.Kind == cmdPeerView:
				res = Result{Up: c.upPeers()}
			case !c.IsLeader():
				res = resultOf(ErrNotLeader)
			default:
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				r, err := c.applyLocal(ctx, &cmd)
				cancel()
				if err != nil {
					r = resultOf(err)
				}
				res = r
			}
			_ = writeMsg(conn, &res)
		}()
	}
}

func writeMsg(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = w.Write(append(binary.BigEndian.AppendUint32(nil, uint32(len(b))), b...))
	return err
}

func readMsg(r io.Reader, v any) error {
	var n [4]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return err
	}
	size := binary.BigEndian.Uint32(n[:])
	if size > maxRPCBytes {
		return fmt.Errorf("%w: message of %d bytes", ErrBadCommand, size)
	}
	b := make([]byte, size)
	if _, err := io.ReadFull(r, b); err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// Close leaves the group. It is safe to call more than once.
func (c *Controller) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.mu.Unlock()
	close(c.stop)
	c.runMu.Lock()
	err := c.stopRun(c.cur.Load())
	c.runMu.Unlock()
	c.rpc.Close()
	c.wg.Wait()
	return err
}

// metaFSM applies commands to the controller's state.
type metaFSM Controller

func (f *metaFSM) Apply(l *raft.Log) any {
	if l.Index <= f.replayed.Load() {
		return nil // applied before the run was replaced
	}
	defer f.applied.Store(l.Index)
	if l.Type != raft.LogCommand {
		return nil
	}
	var cmd Command
	if err := json.Unmarshal(l.Data, &cmd); err != nil {
		return resultOf(fmt.Errorf("%w: %w", ErrBadCommand, err))
	}
	next, res := apply(f.state.Load(), &cmd)
	f.publish(next)
	return res
}

func (f *metaFSM) publish(s *State) {
	if s == f.state.Load() {
		return
	}
	f.state.Store(s)
	f.mu.Lock()
	ws := slices.Clone(f.watchers)
	f.mu.Unlock()
	for _, w := range ws {
		w(s)
	}
}

func (f *metaFSM) Snapshot() (raft.FSMSnapshot, error) {
	b, err := encodeState(f.state.Load())
	if err != nil {
		return nil, err
	}
	return stateSnapshot(b), nil
}

func (f *metaFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	if f.restoring.Load() {
		return nil // the state is at least as new (see forceVoters)
	}
	b, err := io.ReadAll(rc)
	if err != nil {
		return fmt.Errorf("cluster: reading snapshot: %w", err)
	}
	s, err := decodeState(b)
	if err != nil {
		return err
	}
	f.publish(s)
	return nil
}

type stateSnapshot []byte

func (s stateSnapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := sink.Write(s); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("cluster: writing snapshot: %w", err)
	}
	return sink.Close()
}

func (s stateSnapshot) Release() {}
