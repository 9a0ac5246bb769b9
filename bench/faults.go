package bench

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// faultAction is what a fault kind does, and to which role.
type faultAction struct {
	role string // "leader", "follower", "controller", or "" for heal
	verb string // kill, restart, pause, resume, isolate, heal
}

var faultActions = map[FaultKind]faultAction{
	LeaderKill:      {"leader", "kill"},
	LeaderRestart:   {"leader", "restart"},
	FollowerKill:    {"follower", "kill"},
	FollowerRestart: {"follower", "restart"},
	LeaderPause:     {"leader", "pause"},
	LeaderResume:    {"leader", "resume"},
	FollowerPause:   {"follower", "pause"},
	FollowerResume:  {"follower", "resume"},
	LeaderIsolate:   {"leader", "isolate"},
	FollowerIsolate: {"follower", "isolate"},
	Split:           {"leader", "split"},
	Bridge:          {"leader", "bridge"},
	NetHeal:         {"", "heal"},

	ControllerKill:    {"controller", "kill"},
	ControllerRestart: {"controller", "restart"},
	ControllerPause:   {"controller", "pause"},
	ControllerResume:  {"controller", "resume"},
	ControllerIsolate: {"controller", "isolate"},
}

// faultRoles are the roles a kill, pause or isolate aims at.
var faultRoles = []string{"leader", "follower", "controller"}

// FaultKinds lists every fault kind, in the order of the constants.
func FaultKinds() []FaultKind {
	return []FaultKind{LeaderKill, LeaderRestart, FollowerKill, FollowerRestart,
		LeaderPause, LeaderResume, FollowerPause, FollowerResume,
		LeaderIsolate, FollowerIsolate, Split, Bridge, NetHeal,
		ControllerKill, ControllerRestart, ControllerPause, ControllerResume, ControllerIsolate}
}

// NeedsNetns reports whether the kind cuts the network, which needs a
// cluster in network namespaces.
func (k FaultKind) NeedsNetns() bool {
	switch faultActions[k].verb {
	case "isolate", "split", "bridge":
		return true
	}
	return false
}

// undoes names the kind that undoes k's verb ("" for kinds that undo).
func undoes(verb string) string {
	switch verb {
	case "restart":
		return "kill"
	case "resume":
		return "pause"
	case "heal":
		return "isolate"
	}
	return ""
}

// ParseFaults parses a schedule "leader-kill@10s,leader-restart@20s,...":
// each fault a kind and a delay from the start of the measured phase
// (a Go duration). The result is in time order (the given order among
// equal times). A restart or resume needs an earlier kill or pause of the
// same role that is still in effect, a heal an earlier isolate, split or
// bridge.
// An empty spec is no faults.
func ParseFaults(spec string) ([]Fault, error) {
	spec = strings.TrimSpace(spec)
	if spec == "" {
		return nil, nil
	}
	var faults []Fault
	for _, item := range strings.Split(spec, ",") {
		item = strings.TrimSpace(item)
		kind, at, ok := strings.Cut(item, "@")
		if !ok {
			return nil, fmt.Errorf("fault %q: want KIND@DELAY, e.g. leader-kill@10s", item)
		}
		k := FaultKind(strings.TrimSpace(kind))
		if _, known := faultActions[k]; !known {
			return nil, fmt.Errorf("fault %q: unknown kind %q (known: %s)", item, k, kindList())
		}
		d, err := time.ParseDuration(strings.TrimSpace(at))
		if err != nil {
			return nil, fmt.Errorf("fault %q: bad delay: %w", item, err)
		}
		if d < 0 {
			return nil, fmt.Errorf("fault %q: negative delay", item)
		}
		faults = append(faults, Fault{At: d, Kind: k})
	}
	slices.SortStableFunc(faults, func(a, b Fault) int { return cmp.Compare(a.At, b.At) })
	if err := checkFaults(faults); err != nil {
		return nil, err
	}
	return faults, nil
}

func kindList() string {
	var names []string
	for _, k := range FaultKinds() {
		names = append(names, string(k))
	}
	return strings.Join(names, ", ")
}

// checkFaults checks that every undoing fault of a time-ordered schedule
// has something to undo.
func checkFaults(faults []Fault) error {
	open := map[faultAction]int{} // faults in effect by role and verb
	cuts := 0                     // network faults in effect
	for _, f := range faults {
		a := faultActions[f.Kind]
		switch a.verb {
		case "kill", "pause":
			open[a]++
		case "isolate", "split", "bridge":
			cuts++
		case "heal":
			if cuts == 0 {
				return fmt.Errorf("fault %s@%v: no isolate, split or bridge before it to heal", f.Kind, f.At)
			}
			cuts = 0
		default:
			cause := faultAction{a.role, undoes(a.verb)}
			if open[cause] == 0 {
				return fmt.Errorf("fault %s@%v: no %s-%s before it", f.Kind, f.At, cause.role, cause.verb)
			}
			open[cause]--
		}
	}
	return nil
}

// FormatFaults is the inverse of ParseFaults.
func FormatFaults(faults []Fault) string {
	parts := make([]string, len(faults))
	for i, f := range faults {
		parts[i] = fmt.Sprintf("%s@%v", f.Kind, f.At)
	}
	return strings.Join(parts, ",")
}

// Injector injects a schedule of faults into a local cluster, aimed at
// the leader or a follower of one partition as they are at the moment of
// each fault. It implements FaultSource.
type Injector struct {
	c         *Cluster
	seeds     []string
	topic     string
	partition int32
	schedule  []Fault
	log       *slog.Logger

	mu       sync.Mutex
	killed   map[string][]int32 // by role, oldest first
	paused   map[string][]int32
	isolated []faulted
	clients  map[int32]*kgo.Client // one per broker, for metadata asked of it
}

// faulted is a broker a fault is holding, for Current.
type faulted struct {
	kind FaultKind
	id   int32
}

var _ FaultSource = (*Injector)(nil)

// NewInjector returns an injector for the partition of topic on c.
// brokers are the addresses the injector's metadata requests go to,
// broker i+1 at brokers[i] (nil: c.Bootstrap()); it asks each broker no
// fault holds directly and believes the newest leader epoch, so that a
// paused or cut off broker cannot stall or mislead it. log may be nil.
func NewInjector(c *Cluster, brokers []string, topic string, partition int32, schedule []Fault, log *slog.Logger) *Injector {
	if len(brokers) == 0 {
		brokers = c.Bootstrap()
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := slices.Clone(schedule)
	slices.SortStableFunc(s, func(a, b Fault) int { return cmp.Compare(a.At, b.At) })
	return &Injector{
		c: c, seeds: brokers, topic: topic, partition: partition, schedule: s, log: log,
		killed: map[string][]int32{}, paused: map[string][]int32{}, clients: map[int32]*kgo.Client{},
	}
}

// Current describes the faults in effect ("" when none), e.g.
// "leader-kill broker 2".
func (i *Injector) Current() string {
	i.mu.Lock()
	defer i.mu.Unlock()
	var parts []string
	for _, f := range i.holding() {
		parts = append(parts, fmt.Sprintf("%s broker %d", f.kind, f.id))
	}
	return strings.Join(parts, ", ")
}

// holding lists the faults in effect; i.mu is held.
func (i *Injector) holding() []faulted {
	var out []faulted
	for _, role := range faultRoles {
		for _, id := range i.killed[role] {
			out = append(out, faulted{FaultKind(role + "-kill"), id})
		}
		for _, id := range i.paused[role] {
			out = append(out, faulted{FaultKind(role + "-pause"), id})
		}
	}
	return append(out, i.isolated...)
}

// faultedIDs are the brokers a fault holds.
func (i *Injector) faultedIDs() map[int32]bool {
	i.mu.Lock()
	defer i.mu.Unlock()
	out := map[int32]bool{}
	for _, f := range i.holding() {
		out[f.id] = true
	}
	return out
}

// Run injects the schedule relative to start, sending each event on events
// (which may be nil) as it happens, then heals the cluster (restarts killed
// brokers, resumes paused ones, removes cuts) and waits until every broker
// serves again. When ctx ends it stops injecting, heals the same way and
// returns nil if healing worked; events after that are sent only if the
// channel has room. A fault that fails is an event with Err set, not an
// error; Run's error is a cluster it could not make whole.
func (i *Injector) Run(ctx context.Context, start time.Time, events chan<- FaultEvent) error {
	defer i.closeClients()
	send := func(ev FaultEvent) {
		if events == nil {
			return
		}
		if ctx.Err() != nil {
			select {
			case events <- ev:
			default:
			}
			return
		}
		select {
		case events <- ev:
		case <-ctx.Done():
		}
	}
	for _, f := range i.schedule {
		t := time.NewTimer(time.Until(start.Add(f.At)))
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
			send(i.Inject(ctx, f.Kind))
		}
		if ctx.Err() != nil {
			break
		}
	}
	hctx := ctx
	if ctx.Err() != nil {
		var cancel context.CancelFunc
		hctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
		defer cancel()
	}
	return i.heal(hctx, send)
}

// heal undoes every fault in effect, one event each, and waits until every
// broker serves.
func (i *Injector) heal(ctx context.Context, send func(FaultEvent)) error {
	var errs []error
	for _, role := range faultRoles {
		for {
			i.mu.Lock()
			n := len(i.paused[role])
			i.mu.Unlock()
			if n == 0 {
				break
			}
			ev := i.Inject(ctx, FaultKind(role+"-resume"))
			send(ev)
			if ev.Err != "" {
				errs = append(errs, errors.New(ev.Err))
				break
			}
		}
	}
	i.mu.Lock()
	cut := len(i.isolated) > 0
	i.mu.Unlock()
	if cut {
		ev := i.Inject(ctx, NetHeal)
		send(ev)
		if ev.Err != "" {
			errs = append(errs, errors.New(ev.Err))
		}
	}
	for _, role := range faultRoles {
		for {
			i.mu.Lock()
			n := len(i.killed[role])
			i.mu.Unlock()
			if n == 0 {
				break
			}
			ev := i.Inject(ctx, FaultKind(role+"-restart"))
			send(ev)
			if ev.Err != "" {
				errs = append(errs, errors.New(ev.Err))
				break
			}
		}
	}
	// Every broker serves and sees a majority. All of them may take
	// longer: a broker that was cut off can stay fenced in the metadata
	// for a while after the heal, which is the cluster's business, not
	// the injector's; it is logged.
	n := i.c.Brokers()
	for id := int32(1); id <= int32(n); id++ {
		if err := i.c.waitServing(ctx, id, n/2+1); err != nil {
			errs = append(errs, err)
			continue
		}
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		if err := i.c.WaitServing(wctx, id); err != nil {
			i.log.Warn("broker does not see every broker after the faults", "broker", id, "err", err)
		}
		cancel()
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("bench: healing the cluster: %w", err)
	}
	return nil
}

// Inject applies one fault now and returns its event (Err set if it
// failed). Kills, pauses and isolations pick their broker from the
// partition's current metadata; restarts and resumes undo the oldest
// kill or pause of the same role still in effect, heal every cut.
func (i *Injector) Inject(ctx context.Context, kind FaultKind) FaultEvent {
	ev := FaultEvent{At: time.Now(), Kind: kind}
	detail, id, err := i.inject(ctx, kind)
	ev.Broker, ev.Detail = id, detail
	i.mu.Lock()
	for _, f := range i.holding() {
		if v := faultActions[f.kind].verb; v == "kill" || v == "pause" {
			ev.Down = append(ev.Down, f.id)
		}
	}
	i.mu.Unlock()
	slices.Sort(ev.Down)
	ev.Cuts = i.c.Cuts()
	if err != nil {
		ev.Err = err.Error()
		i.log.Warn("fault failed", "kind", kind, "broker", id, "err", err)
	} else {
		i.log.Info("fault", "kind", kind, "broker", id, "detail", detail)
	}
	return ev
}

func (i *Injector) inject(ctx context.Context, kind FaultKind) (string, int32, error) {
	a, ok := faultActions[kind]
	if !ok {
		return "", 0, fmt.Errorf("unknown fault kind %q", kind)
	}
	switch a.verb {
	case "kill", "pause", "isolate", "split", "bridge":
		if kind.NeedsNetns() && !i.c.Netns() {
			return "", 0, errors.New("cutting the network needs a cluster in network namespaces")
		}
		view, id, why, err := i.target(ctx, a.role)
		if err != nil {
			return "", 0, err
		}
		p := i.c.Broker(id)
		switch a.verb {
		case "kill":
			pid := p.Pid()
			p.Kill()
			i.mu.Lock()
			i.killed[a.role] = append(i.killed[a.role], id)
			i.mu.Unlock()
			return fmt.Sprintf("SIGKILL pid %d (%s)", pid, why), id, nil
		case "pause":
			pid := p.Pid()
			if err := p.Pause(); err != nil {
				return "", id, err
			}
			i.mu.Lock()
			i.paused[a.role] = append(i.paused[a.role], id)
			i.mu.Unlock()
			return fmt.Sprintf("SIGSTOP pid %d (%s)", pid, why), id, nil
		case "isolate":
			// Record it first: a partly made cut is healed too.
			i.mu.Lock()
			i.isolated = append(i.isolated, faulted{kind, id})
			i.mu.Unlock()
			if err := i.c.Isolate(ctx, id); err != nil {
				return "", id, err
			}
			return fmt.Sprintf("cut off from the other brokers (%s)", why), id, nil
		default:
			left, bridge, right := i.sides(view, a.verb == "bridge")
			i.mu.Lock()
			i.isolated = append(i.isolated, faulted{kind, id})
			i.mu.Unlock()
			for _, x := range left {
				for _, y := range right {
					if err := i.c.Cut(ctx, x, y); err != nil {
						return "", id, err
					}
				}
			}
			if bridge > 0 {
				return fmt.Sprintf("%v | %d | %v: both halves reach broker %d, not each other (%s)", left, bridge, right, bridge, why), id, nil
			}
			return fmt.Sprintf("%v | %v (%s)", left, right, why), id, nil
		}
	case "restart", "resume":
		list := i.killed
		if a.verb == "resume" {
			list = i.paused
		}
		i.mu.Lock()
		ids := list[a.role]
		i.mu.Unlock()
		if len(ids) == 0 {
			return "", 0, fmt.Errorf("no %s-%s in effect", a.role, undoes(a.verb))
		}
		id := ids[0]
		var err error
		began := time.Now()
		if a.verb == "restart" {
			err = i.c.Restart(ctx, id)
		} else {
			err = i.c.Broker(id).Resume()
		}
		if err != nil {
			return "", id, err
		}
		i.mu.Lock()
		list[a.role] = list[a.role][1:]
		i.mu.Unlock()
		if a.verb == "restart" {
			return fmt.Sprintf("pid %d serving after %v", i.c.Broker(id).Pid(), time.Since(began).Round(time.Millisecond)), id, nil
		}
		return fmt.Sprintf("SIGCONT pid %d", i.c.Broker(id).Pid()), id, nil
	default: // heal
		cuts := i.c.Cuts()
		if err := i.c.Heal(ctx); err != nil {
			return "", 0, err
		}
		i.mu.Lock()
		i.isolated = nil
		i.mu.Unlock()
		return fmt.Sprintf("removed cuts %v", cuts), 0, nil
	}
}

// partitionView is the partition as one broker's metadata shows it.
type partitionView struct {
	from       int32
	controller int32
	leader     int32
	epoch      int32
	replicas   []int32
}

// views asks every broker no fault holds for the partition's metadata.
func (i *Injector) views(ctx context.Context, skip map[int32]bool) ([]partitionView, error) {
	var out []partitionView
	var errs []error
	for id := int32(1); id <= int32(i.c.Brokers()); id++ {
		if skip[id] {
			continue
		}
		v, err := i.view(ctx, id)
		if err != nil {
			errs = append(errs, fmt.Errorf("broker %d: %w", id, err))
			continue
		}
		out = append(out, v)
	}
	if len(out) == 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

// view asks broker id for the partition's metadata.
func (i *Injector) view(ctx context.Context, id int32) (partitionView, error) {
	cl, err := i.client(id)
	if err != nil {
		return partitionView{}, err
	}
	resp, err := askMetadata(ctx, cl, i.topic, 2*time.Second)
	if err != nil {
		return partitionView{}, err
	}
	for _, t := range resp.Topics {
		if t.Topic == nil || *t.Topic != i.topic {
			continue
		}
		for _, p := range t.Partitions {
			if p.Partition == i.partition {
				return partitionView{from: id, controller: resp.ControllerID, leader: p.Leader, epoch: p.LeaderEpoch, replicas: p.Replicas}, nil
			}
		}
	}
	return partitionView{}, fmt.Errorf("no partition %s/%d in its metadata", i.topic, i.partition)
}

// askMetadata asks cl's first seed broker for topic's metadata, giving up
// after d.
func askMetadata(ctx context.Context, cl *kgo.Client, topic string, d time.Duration) (*kmsg.MetadataResponse, error) {
	req := kmsg.NewPtrMetadataRequest()
	t := kmsg.NewMetadataRequestTopic()
	t.Topic = kmsg.StringPtr(topic)
	req.Topics = append(req.Topics, t)
	rctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	r, err := cl.SeedBrokers()[0].Request(rctx, req)
	if err != nil {
		return nil, err
	}
	return r.(*kmsg.MetadataResponse), nil
}

// client returns the kgo client whose only seed is broker id.
func (i *Injector) client(id int32) (*kgo.Client, error) {
	i.mu.Lock()
	defer i.mu.Unlock()
	if cl, ok := i.clients[id]; ok {
		return cl, nil
	}
	addr := i.c.Broker(id).Addr
	if int(id) <= len(i.seeds) {
		addr = i.seeds[id-1]
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.RequestRetries(0))
	if err != nil {
		return nil, fmt.Errorf("client for broker %d: %w", id, err)
	}
	i.clients[id] = cl
	return cl, nil
}

func (i *Injector) closeClients() {
	i.mu.Lock()
	defer i.mu.Unlock()
	for id, cl := range i.clients {
		cl.Close()
		delete(i.clients, id)
	}
}

// target picks the broker a kill, pause or isolate of role hits: the
// partition's leader by the newest leader epoch among the brokers no
// fault holds, or a replica of it that is neither the leader nor held.
// It retries for a while when the partition is leaderless or its leader
// is a broker a fault holds (metadata not yet caught up).
func (i *Injector) target(ctx context.Context, role string) (partitionView, int32, string, error) {
	tctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	var last error
	for {
		view, id, why, err := i.pick(tctx, role)
		if err == nil {
			return view, id, why, nil
		}
		last = err
		select {
		case <-tctx.Done():
			return partitionView{}, 0, "", fmt.Errorf("finding the %s of %s/%d: %w", role, i.topic, i.partition, last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (i *Injector) pick(ctx context.Context, role string) (partitionView, int32, string, error) {
	held := i.faultedIDs()
	views, err := i.views(ctx, held)
	if err != nil {
		return partitionView{}, 0, "", err
	}
	if role == "controller" {
		return i.pickController(views, held)
	}
	best := views[0]
	for _, v := range views[1:] {
		if v.leader >= 0 && (best.leader < 0 || v.epoch > best.epoch) {
			best = v
		}
	}
	if best.leader < 0 {
		return partitionView{}, 0, "", errors.New("no leader")
	}
	if held[best.leader] {
		return partitionView{}, 0, "", fmt.Errorf("leader %d is a broker under a fault", best.leader)
	}
	if i.c.Broker(best.leader) == nil {
		return partitionView{}, 0, "", fmt.Errorf("leader %d is not a broker of this cluster", best.leader)
	}
	if role == "leader" {
		return best, best.leader, fmt.Sprintf("leader, epoch %d", best.epoch), nil
	}
	for _, r := range best.replicas {
		if r != best.leader && !held[r] && i.c.Broker(r) != nil && i.c.Broker(r).Alive() {
			return best, r, fmt.Sprintf("follower of leader %d, epoch %d", best.leader, best.epoch), nil
		}
	}
	return partitionView{}, 0, "", fmt.Errorf("no follower of leader %d outside faults among replicas %v", best.leader, best.replicas)
}

// pickController picks the controller most of the brokers no fault holds
// name; none of them may be held.
func (i *Injector) pickController(views []partitionView, held map[int32]bool) (partitionView, int32, string, error) {
	votes := map[int32]int{}
	var best int32 = -1
	for _, v := range views {
		if v.controller < 0 {
			continue
		}
		votes[v.controller]++
		if best < 0 || votes[v.controller] > votes[best] {
			best = v.controller
		}
	}
	switch {
	case best < 0:
		return partitionView{}, 0, "", errors.New("no controller")
	case held[best]:
		return partitionView{}, 0, "", fmt.Errorf("controller %d is a broker under a fault", best)
	case i.c.Broker(best) == nil:
		return partitionView{}, 0, "", fmt.Errorf("controller %d is not a broker of this cluster", best)
	}
	return partitionView{}, best, fmt.Sprintf("controller, named by %d of %d brokers", votes[best], len(views)), nil
}

// sides splits the brokers in two for a split or a bridge of the partition
// as view shows it: the leader's side is the leader and brokers that do not
// replicate the partition, preferably, so that the leader loses its
// partition's majority; the other side the rest. A split gives the
// leader's side a minority of the brokers. A bridge first sets aside the
// bridge, a broker outside the partition (else a follower), which the cut
// leaves joined to both sides, and halves the rest.
func (i *Injector) sides(view partitionView, bridge bool) (leader []int32, middle int32, other []int32) {
	n := int32(i.c.Brokers())
	var outside, followers []int32
	for id := int32(1); id <= n; id++ {
		switch {
		case id == view.leader:
		case slices.Contains(view.replicas, id):
			followers = append(followers, id)
		default:
			outside = append(outside, id)
		}
	}
	rest := append(outside, followers...)
	if bridge && len(rest) > 0 {
		middle, rest = rest[0], rest[1:]
	}
	// The leader's side: a minority of all brokers for a split, half
	// the brokers (rounded down) besides the bridge for a bridge.
	size := int(n-1) / 2
	if bridge {
		size = (len(rest) + 1) / 2
	}
	leader = append([]int32{view.leader}, rest[:max(0, size-1)]...)
	other = slices.Clone(rest[max(0, size-1):])
	slices.Sort(leader)
	slices.Sort(other)
	return leader, middle, other
}
