package coordinator

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"slices"
	"time"
)

// State is a group's state in the classic protocol.
type State int

// The states of a group, as Kafka's GroupState.
const (
	StateEmpty State = iota
	StatePreparingRebalance
	StateCompletingRebalance
	StateStable
	StateDead
)

// String is the state's name as DescribeGroups and ListGroups report it.
func (s State) String() string {
	switch s {
	case StateEmpty:
		return "Empty"
	case StatePreparingRebalance:
		return "PreparingRebalance"
	case StateCompletingRebalance:
		return "CompletingRebalance"
	case StateStable:
		return "Stable"
	default:
		return "Dead"
	}
}

// member is one member of a group.
type member struct {
	id         string
	instanceID string // "" for a dynamic member
	clientID   string
	clientHost string

	sessionTimeout   time.Duration
	rebalanceTimeout time.Duration
	protocolType     string
	protocols        []Protocol
	assignment       []byte

	// joinDone and syncDone are the JoinGroup and SyncGroup waiting for an
	// answer, if any.
	joinDone func(JoinResult)
	syncDone func(SyncResult)
	// isNew marks a member added by the rebalance in progress: it expires
	// after newMemberJoinTimeout if that rebalance never completes.
	isNew bool
	// deadline is when the member's session expires; zero while no
	// expiration is scheduled (it awaits a join or sync answer).
	deadline time.Time
}

// matches reports whether the member's protocols are exactly protocols.
func (m *member) matches(protocols []Protocol) bool {
	return slices.EqualFunc(m.protocols, protocols, func(a, b Protocol) bool {
		return a.Name == b.Name && bytes.Equal(a.Metadata, b.Metadata)
	})
}

// metadata is the member's metadata for protocol.
func (m *member) metadata(protocol string) []byte {
	for _, p := range m.protocols {
		if p.Name == protocol {
			return p.Metadata
		}
	}
	return nil
}

// vote is the first of the member's protocols that is a candidate.
func (m *member) vote(candidates map[string]bool) string {
	for _, p := range m.protocols {
		if candidates[p.Name] {
			return p.Name
		}
	}
	return ""
}

// group is one consumer group: its membership state machine and its
// committed offsets. Only its own goroutine (actor.run) uses it.
type group struct {
	actor

	id           string
	state        State
	stateTime    time.Time // when the state was entered; zero if unknown
	protocolType string    // "" until a member sets it
	protocol     string    // the selected protocol; "" when none
	generation   int32
	leader       string
	members      map[string]*member
	order        []string          // member IDs in the order they were added
	static       map[string]string // instance ID -> member ID
	pending      map[string]time.Time
	pendingSync  map[string]bool
	supported    map[string]int // protocol name -> members supporting it
	awaitingJoin int
	// newMemberAdded extends the initial rebalance delay of a new group.
	newMemberAdded bool

	// The join phase of a rebalance (Kafka's DelayedJoin and
	// InitialDelayedJoin).
	joinDeadline  time.Time
	joinInitial   bool
	joinDelay     time.Duration
	joinRemaining time.Duration
	// syncDeadline is when members that did not send SyncGroup for
	// generation syncGeneration are removed.
	syncDeadline   time.Time
	syncGeneration int32

	// subscribed is the union of the consumer members' subscribed topics;
	// nil when unknown (not a consumer group, or unreadable metadata).
	subscribed map[string]bool

	offsets map[topicPartition]offset
	commits map[topicPartition]int // commits in flight per partition
	// txnOffsets are the offsets committed in transactions not yet ended,
	// by producer ID: they take effect when the transaction commits.
	txnOffsets map[int64]map[topicPartition]offset
	// stableWaiters are OffsetFetches with RequireStable waiting for the
	// commits in flight.
	stableWaiters []waiter
}

func (g *group) transition(s State, now time.Time) {
	g.state = s
	g.stateTime = now
}

// newMemberID is Kafka's member ID: the client ID (or the instance ID of a
// static member), a dash, and a random UUID.
func newMemberID(prefix string) string {
	var u [16]byte
	_, _ = rand.Read(u[:]) // never fails
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return fmt.Sprintf("%s-%x-%x-%x-%x-%x", prefix, u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}

// supportsProtocols reports whether a member with these protocols may join.
func (g *group) supportsProtocols(protocolType string, protocols []Protocol) bool {
	if g.state == StateEmpty {
		return protocolType != "" && len(protocols) > 0
	}
	if g.protocolType != protocolType {
		return false
	}
	for _, p := range protocols {
		if g.supported[p.Name] == len(g.members) {
			return true
		}
	}
	return false
}

func (g *group) incSupported(m *member) {
	for _, p := range m.protocols {
		g.supported[p.Name]++
	}
}

func (g *group) decSupported(m *member) {
	for _, p := range m.protocols {
		if g.supported[p.Name]--; g.supported[p.Name] <= 0 {
			delete(g.supported, p.Name)
		}
	}
}

// selectProtocol picks the protocol every member supports that most members
// list first (Kafka's vote); ties go to the one the earliest member votes
// for.
func (g *group) selectProtocol() string {
	candidates := make(map[string]bool)
	for name, n := range g.supported {
		if n == len(g.members) {
			candidates[name] = true
		}
	}
	votes := make(map[string]int)
	best := ""
	for _, id := range g.order {
		v := g.members[id].vote(candidates)
		votes[v]++
	}
	for _, id := range g.order {
		v := g.members[id].vote(candidates)
		if best == "" || votes[v] > votes[best] {
			best = v
		}
	}
	return best
}

// rebalanceTimeout is the longest rebalance timeout of the members.
func (g *group) rebalanceTimeout() time.Duration {
	var d time.Duration
	for _, m := range g.members {
		d = max(d, m.rebalanceTimeout)
	}
	return d
}

func (g *group) allJoined() bool {
	return len(g.members) == g.awaitingJoin && len(g.pending) == 0
}

// validateMember checks that memberID is a member and, for a static member,
// that it is the current holder of instanceID.
func (g *group) validateMember(memberID, instanceID string) error {
	if instanceID != "" {
		cur, ok := g.static[instanceID]
		if !ok {
			return ErrUnknownMemberID
		}
		if cur != memberID {
			return ErrFencedInstanceID
		}
		return nil
	}
	if g.members[memberID] == nil {
		return ErrUnknownMemberID
	}
	return nil
}

// joinResult is the JoinGroup answer to m for the current generation.
func (g *group) joinResult(m *member, leader string, withMembers bool) JoinResult {
	r := JoinResult{MemberID: m.id, Generation: g.generation, Leader: leader}
	if g.protocolType != "" {
		pt := g.protocolType
		r.ProtocolType = &pt
	}
	if g.protocol != "" {
		p := g.protocol
		r.Protocol = &p
	}
	if withMembers {
		for _, id := range g.order {
			om := g.members[id]
			jm := JoinMember{MemberID: om.id, Metadata: om.metadata(g.protocol)}
			if om.instanceID != "" {
				iid := om.instanceID
				jm.InstanceID = &iid
			}
			r.Members = append(r.Members, jm)
		}
	}
	return r
}

func (g *group) answerJoin(m *member, r JoinResult) {
	if m.joinDone == nil {
		return
	}
	done := m.joinDone
	m.joinDone = nil
	g.awaitingJoin--
	done(r)
}

func (g *group) answerSync(m *member, r SyncResult) {
	if m.syncDone == nil {
		return
	}
	done := m.syncDone
	m.syncDone = nil
	done(r)
}

// join serves a JoinGroup.
func (g *group) join(req JoinRequest, done func(JoinResult), now time.Time) {
	if req.MemberID == "" {
		g.joinNew(req, done, now)
	} else {
		g.joinKnown(req, done, now)
	}
	if g.state == StatePreparingRebalance {
		g.tryCompleteJoin(now)
	}
}

func (g *group) joinNew(req JoinRequest, done func(JoinResult), now time.Time) {
	if !g.supportsProtocols(req.ProtocolType, req.Protocols) {
		done(JoinResult{Err: ErrInconsistentProtocol, Generation: -1})
		return
	}
	instanceID := deref(req.InstanceID)
	if instanceID != "" {
		newID := newMemberID(instanceID)
		if old, ok := g.static[instanceID]; ok {
			g.replaceStaticMember(old, newID, req, done, now)
		} else {
			g.addMember(newID, req, done, now)
		}
		return
	}
	newID := newMemberID(req.ClientID)
	if req.RequireKnownMemberID {
		// KIP-394: the member joins again with this ID; until then it is
		// pending and holds up the rebalance for its session timeout.
		g.pending[newID] = now.Add(req.SessionTimeout)
		done(JoinResult{Err: ErrMemberIDRequired, MemberID: newID, Generation: -1})
		return
	}
	g.addMember(newID, req, done, now)
}

func (g *group) joinKnown(req JoinRequest, done func(JoinResult), now time.Time) {
	fail := func(err error) { done(JoinResult{Err: err, MemberID: req.MemberID, Generation: -1}) }
	if !g.supportsProtocols(req.ProtocolType, req.Protocols) {
		fail(ErrInconsistentProtocol)
		return
	}
	instanceID := deref(req.InstanceID)
	if _, ok := g.pending[req.MemberID]; ok {
		if instanceID != "" {
			// Pending members are dynamic; Kafka fails such a join.
			fail(ErrUnknownMemberID)
			return
		}
		g.addMember(req.MemberID, req, done, now)
		return
	}
	if err := g.validateMember(req.MemberID, instanceID); err != nil {
		fail(err)
		return
	}
	m := g.members[req.MemberID]
	switch g.state {
	case StatePreparingRebalance:
		g.updateMemberAndRebalance(m, req, done, now)
	case StateCompletingRebalance:
		if m.matches(req.Protocols) {
			// A retry of a join whose answer was lost: answer again.
			done(g.joinResult(m, g.leader, m.id == g.leader))
			return
		}
		g.updateMemberAndRebalance(m, req, done, now)
	case StateStable:
		if m.id == g.leader || !m.matches(req.Protocols) {
			// A leader rejoining forces a rebalance, so it can react to
			// changes its members' metadata does not show.
			g.updateMemberAndRebalance(m, req, done, now)
			return
		}
		done(g.joinResult(m, g.leader, false))
	default:
		fail(ErrUnknownMemberID)
	}
}

// addMember adds a new member that waits for the rebalance it triggers.
func (g *group) addMember(id string, req JoinRequest, done func(JoinResult), now time.Time) {
	m := &member{
		id:               id,
		instanceID:       deref(req.InstanceID),
		clientID:         req.ClientID,
		clientHost:       req.ClientHost,
		sessionTimeout:   req.SessionTimeout,
		rebalanceTimeout: req.RebalanceTimeout,
		protocolType:     req.ProtocolType,
		protocols:        req.Protocols,
		isNew:            true,
	}
	if g.state == StatePreparingRebalance && g.generation == 0 {
		g.newMemberAdded = true
	}
	g.add(m, done)
	// A new member cannot heartbeat before its join is answered; if the
	// join never completes it is dropped after this long.
	m.deadline = now.Add(newMemberJoinTimeout)
	g.maybePrepareRebalance(now, withReason("adding new member "+id, req.Reason))
}

func (g *group) add(m *member, done func(JoinResult)) {
	if m.instanceID != "" {
		g.static[m.instanceID] = m.id
	}
	if len(g.members) == 0 {
		g.protocolType = m.protocolType
	}
	if g.leader == "" {
		g.leader = m.id
	}
	g.members[m.id] = m
	g.order = append(g.order, m.id)
	g.incSupported(m)
	m.joinDone = done
	if done != nil {
		g.awaitingJoin++
	}
	delete(g.pending, m.id)
}

// remove takes a member out of the group, answering its waiting join or
// sync with UNKNOWN_MEMBER_ID.
func (g *group) remove(m *member) {
	g.answerJoin(m, JoinResult{Err: ErrUnknownMemberID, Generation: -1})
	g.answerSync(m, SyncResult{Err: ErrUnknownMemberID})
	delete(g.members, m.id)
	if i := slices.Index(g.order, m.id); i >= 0 {
		g.order = slices.Delete(g.order, i, i+1)
	}
	g.decSupported(m)
	if m.instanceID != "" && g.static[m.instanceID] == m.id {
		delete(g.static, m.instanceID)
	}
	delete(g.pendingSync, m.id)
	if g.leader == m.id {
		g.leader = ""
		if len(g.order) > 0 {
			g.leader = g.order[0]
		}
	}
}

// removeAndRebalance removes a member that left or failed and lets the
// group react.
func (g *group) removeAndRebalance(m *member, now time.Time, reason string) {
	g.remove(m)
	switch g.state {
	case StateStable, StateCompletingRebalance:
		g.maybePrepareRebalance(now, reason)
	case StatePreparingRebalance:
		g.tryCompleteJoin(now)
	}
}

// updateMember replaces a member's protocols and timeouts and the join it
// waits with. A join it waited with before is answered REBALANCE_IN_PROGRESS
// so that its connection is not left without an answer.
func (g *group) updateMember(m *member, protocols []Protocol, rebalanceTimeout, sessionTimeout time.Duration, done func(JoinResult)) {
	g.decSupported(m)
	m.protocols = protocols
	g.incSupported(m)
	m.rebalanceTimeout, m.sessionTimeout = rebalanceTimeout, sessionTimeout
	if m.joinDone != nil {
		g.answerJoin(m, JoinResult{Err: ErrRebalanceInProgress, MemberID: m.id, Generation: -1})
	}
	m.joinDone = done
	if done != nil {
		g.awaitingJoin++
	}
}

func (g *group) updateMemberAndRebalance(m *member, req JoinRequest, done func(JoinResult), now time.Time) {
	g.updateMember(m, req.Protocols, req.RebalanceTimeout, req.SessionTimeout, done)
	g.maybePrepareRebalance(now, withReason("member "+m.id+" rejoined", req.Reason))
}

// replaceStaticMember gives a static member that joined again without its
// member ID a new one, fencing the old (KIP-345).
func (g *group) replaceStaticMember(oldID, newID string, req JoinRequest, done func(JoinResult), now time.Time) {
	oldLeader := g.leader
	m := g.members[oldID]
	g.answerJoin(m, JoinResult{Err: ErrFencedInstanceID, MemberID: oldID, Generation: -1})
	g.answerSync(m, SyncResult{Err: ErrFencedInstanceID})
	g.renameMember(m, newID)
	m.deadline = now.Add(m.sessionTimeout)
	oldProtocols, oldRebalance, oldSession := m.protocols, m.rebalanceTimeout, m.sessionTimeout
	g.updateMember(m, req.Protocols, req.RebalanceTimeout, req.SessionTimeout, done)

	switch g.state {
	case StateStable:
		if g.selectProtocol() != g.protocol {
			g.maybePrepareRebalance(now, "static member "+newID+" changed the group's protocol")
			return
		}
		// The assignment stays; persist the new member ID and answer
		// without a rebalance.
		assignments := make(map[string][]byte, len(g.members))
		for id, om := range g.members {
			assignments[id] = om.assignment
		}
		g.storeGroup(assignments, now, func(err error) {
			if m.joinDone == nil || g.members[newID] != m || g.state != StateStable {
				return // superseded, or a rebalance took over the join
			}
			if err != nil {
				g.log.Warn().Err(err).Msg("persisting a replaced static member failed")
				done := m.joinDone
				m.joinDone = nil
				g.awaitingJoin--
				g.updateMember(m, oldProtocols, oldRebalance, oldSession, nil)
				g.renameMember(m, oldID)
				m.deadline = time.Now().Add(m.sessionTimeout)
				r := g.joinResult(m, oldLeader, false)
				r.Err, r.MemberID = err, ""
				done(r)
				return
			}
			isLeader := g.leader == newID
			if req.SkipAssignmentAllowed {
				// The leader learns it leads but keeps the assignment of
				// the stable group.
				r := g.joinResult(m, g.leader, isLeader)
				r.SkipAssignment = isLeader
				g.answerJoin(m, r)
			} else {
				// Older clients: name the old leader ID, so the rejoined
				// leader does not compute an assignment nobody uses.
				g.answerJoin(m, g.joinResult(m, oldLeader, false))
			}
		})
	case StateCompletingRebalance:
		// The leader may be assigning to the old member ID.
		g.prepareRebalance(now, "static member "+newID+" rejoined")
	}
}

// renameMember changes a member's ID everywhere it is referenced.
func (g *group) renameMember(m *member, newID string) {
	oldID := m.id
	delete(g.members, oldID)
	m.id = newID
	g.members[newID] = m
	if i := slices.Index(g.order, oldID); i >= 0 {
		g.order[i] = newID
	}
	if m.instanceID != "" {
		g.static[m.instanceID] = newID
	}
	if g.leader == oldID {
		g.leader = newID
	}
	if g.pendingSync[oldID] {
		delete(g.pendingSync, oldID)
		g.pendingSync[newID] = true
	}
}

// withReason adds the reason a client gave (KIP-800) to a rebalance reason.
func withReason(reason, client string) string {
	if client == "" {
		return reason
	}
	return reason + "; client reason: " + client
}

func (g *group) maybePrepareRebalance(now time.Time, reason string) {
	switch g.state {
	case StateStable, StateCompletingRebalance, StateEmpty:
		g.prepareRebalance(now, reason)
	}
}

// prepareRebalance starts a rebalance: members have the rebalance timeout
// to join again; a new group first waits the initial rebalance delay for
// more members.
func (g *group) prepareRebalance(now time.Time, reason string) {
	if g.state == StateCompletingRebalance {
		g.resetAndPropagateAssignmentError(ErrRebalanceInProgress, now)
	}
	g.syncDeadline = time.Time{}
	rt := g.rebalanceTimeout()
	if g.state == StateEmpty {
		g.joinInitial = true
		g.joinDelay = g.c.cfg.InitialRebalanceDelay
		g.joinRemaining = max(rt-g.joinDelay, 0)
		g.joinDeadline = now.Add(g.joinDelay)
	} else {
		g.joinInitial = false
		g.joinDeadline = now.Add(rt)
	}
	g.log.Debug().Str("from", g.state.String()).Int32("generation", g.generation).Str("reason", reason).Msg("preparing to rebalance")
	g.transition(StatePreparingRebalance, now)
	g.tryCompleteJoin(now)
}

// tryCompleteJoin ends the join phase early once every member has joined
// (never during the initial delay).
func (g *group) tryCompleteJoin(now time.Time) {
	if g.state == StatePreparingRebalance && !g.joinInitial && g.allJoined() {
		g.completeJoin(now)
	}
}

// completeJoin ends the join phase: members that did not join are dropped
// (static ones are kept), the next generation starts and every joined
// member gets its answer, the leader with the member list.
func (g *group) completeJoin(now time.Time) {
	for _, id := range slices.Clone(g.order) {
		if m := g.members[id]; m.joinDone == nil && m.instanceID == "" {
			g.remove(m)
		}
	}
	if len(g.members) > 0 && !g.electJoinedLeader() {
		// Nobody rejoined; wait another rebalance timeout for sessions to
		// expire or members to come back.
		g.joinInitial = false
		g.joinDeadline = now.Add(g.rebalanceTimeout())
		return
	}
	g.joinDeadline = time.Time{}
	g.initNextGeneration(now)
	if g.state == StateEmpty {
		g.storeGroup(nil, now, func(err error) {
			if err != nil {
				g.log.Warn().Err(err).Msg("persisting the empty group failed")
			}
		})
		return
	}
	g.log.Debug().Int32("generation", g.generation).Int("members", len(g.members)).Str("protocol", g.protocol).Msg("group rebalanced")
	for _, id := range g.order {
		m := g.members[id]
		g.answerJoin(m, g.joinResult(m, g.leader, id == g.leader))
		m.deadline = now.Add(m.sessionTimeout)
		m.isNew = false
		g.pendingSync[id] = true
	}
	g.syncDeadline = now.Add(g.rebalanceTimeout())
	g.syncGeneration = g.generation
}

// electJoinedLeader makes sure the leader is a member that joined.
func (g *group) electJoinedLeader() bool {
	if l := g.members[g.leader]; l != nil && l.joinDone != nil {
		return true
	}
	for _, id := range g.order {
		if g.members[id].joinDone != nil {
			g.leader = id
			return true
		}
	}
	return false
}

func (g *group) initNextGeneration(now time.Time) {
	g.generation++
	if len(g.members) > 0 {
		g.protocol = g.selectProtocol()
		g.transition(StateCompletingRebalance, now)
	} else {
		g.protocol = ""
		g.transition(StateEmpty, now)
	}
	g.computeSubscribed()
	clear(g.pendingSync)
}

// computeSubscribed reads the topics consumer members subscribe to, from
// the first fields of the consumer protocol's subscription (common to
// every version).
func (g *group) computeSubscribed() {
	g.subscribed = nil
	if g.protocolType != "consumer" {
		return
	}
	if len(g.members) > 0 && g.protocol == "" {
		return
	}
	subs := make(map[string]bool)
	for _, m := range g.members {
		topics, ok := subscriptionTopics(m.metadata(g.protocol))
		if !ok {
			return
		}
		for _, t := range topics {
			subs[t] = true
		}
	}
	g.subscribed = subs
}

// subscriptionTopics parses the version and topics of a consumer protocol
// subscription.
func subscriptionTopics(b []byte) ([]string, bool) {
	if len(b) < 6 {
		return nil, false
	}
	n := int32(binary.BigEndian.Uint32(b[2:]))
	b = b[6:]
	if n < 0 || int(n) > len(b)/2 {
		return nil, false
	}
	topics := make([]string, 0, n)
	for range n {
		if len(b) < 2 {
			return nil, false
		}
		l := int(int16(binary.BigEndian.Uint16(b)))
		if l < 0 || len(b) < 2+l {
			return nil, false
		}
		topics = append(topics, string(b[2:2+l]))
		b = b[2+l:]
	}
	return topics, true
}

// sync serves a SyncGroup.
func (g *group) sync(req SyncRequest, done func(SyncResult), now time.Time) {
	fail := func(err error) { done(SyncResult{Err: err}) }
	if err := g.validateMember(req.MemberID, deref(req.InstanceID)); err != nil {
		fail(err)
		return
	}
	switch {
	case req.Generation != g.generation:
		fail(ErrIllegalGeneration)
		return
	case req.ProtocolType != nil && (g.protocolType == "" || *req.ProtocolType != g.protocolType):
		fail(ErrInconsistentProtocol)
		return
	case req.Protocol != nil && (g.protocol == "" || *req.Protocol != g.protocol):
		fail(ErrInconsistentProtocol)
		return
	}
	m := g.members[req.MemberID]
	switch g.state {
	case StateEmpty:
		fail(ErrUnknownMemberID)
	case StatePreparingRebalance:
		fail(ErrRebalanceInProgress)
	case StateCompletingRebalance:
		g.answerSync(m, SyncResult{Err: ErrRebalanceInProgress}) // a superseded sync
		m.syncDone = done
		g.syncDone(m.id)
		if m.id != g.leader {
			return
		}
		assignments := make(map[string][]byte, len(g.members))
		for id := range g.members {
			assignments[id] = req.Assignments[id]
		}
		generation := g.generation
		g.storeGroup(assignments, now, func(err error) {
			// The group may have moved on while the write was in flight.
			if g.state != StateCompletingRebalance || g.generation != generation {
				return
			}
			now := time.Now()
			if err != nil {
				g.resetAndPropagateAssignmentError(err, now)
				g.maybePrepareRebalance(now, "storing the assignment failed")
				return
			}
			for id, a := range assignments {
				if m := g.members[id]; m != nil {
					m.assignment = a
				}
			}
			g.propagateAssignment(nil, now)
			g.transition(StateStable, now)
		})
	case StateStable:
		g.syncDone(m.id)
		done(g.syncResult(m))
		m.deadline = now.Add(m.sessionTimeout)
	}
}

// syncDone records that a member sent its SyncGroup.
func (g *group) syncDone(id string) {
	delete(g.pendingSync, id)
	if len(g.pendingSync) == 0 {
		g.syncDeadline = time.Time{}
	}
}

func (g *group) syncResult(m *member) SyncResult {
	r := SyncResult{Assignment: m.assignment}
	if r.Assignment == nil {
		r.Assignment = []byte{}
	}
	if g.protocolType != "" {
		pt := g.protocolType
		r.ProtocolType = &pt
	}
	if g.protocol != "" {
		p := g.protocol
		r.Protocol = &p
	}
	return r
}

// propagateAssignment answers every waiting SyncGroup with the member's
// assignment, or with err.
func (g *group) propagateAssignment(err error, now time.Time) {
	for _, id := range g.order {
		m := g.members[id]
		if m.syncDone == nil {
			continue
		}
		r := SyncResult{Err: err, Assignment: []byte{}}
		if err == nil {
			r = g.syncResult(m)
		}
		g.answerSync(m, r)
		// A session that expired while the member waited was ignored;
		// it starts again now.
		m.deadline = now.Add(m.sessionTimeout)
	}
}

func (g *group) resetAndPropagateAssignmentError(err error, now time.Time) {
	for _, m := range g.members {
		m.assignment = nil
	}
	g.propagateAssignment(err, now)
}

// heartbeat serves a Heartbeat.
func (g *group) heartbeat(req HeartbeatRequest, now time.Time) error {
	if err := g.validateMember(req.MemberID, deref(req.InstanceID)); err != nil {
		return err
	}
	if req.Generation != g.generation {
		return ErrIllegalGeneration
	}
	m := g.members[req.MemberID]
	switch g.state {
	case StateCompletingRebalance, StateStable:
		m.deadline = now.Add(m.sessionTimeout)
		return nil
	case StatePreparingRebalance:
		m.deadline = now.Add(m.sessionTimeout)
		return ErrRebalanceInProgress
	default:
		return ErrUnknownMemberID
	}
}

// leave serves a LeaveGroup: one error per leaving member.
func (g *group) leave(leaving []MemberIdentity, now time.Time) []error {
	errs := make([]error, len(leaving))
	for i, lm := range leaving {
		instanceID := deref(lm.InstanceID)
		switch {
		case lm.MemberID == "":
			// An administrator removing a static member by instance ID.
			cur, ok := g.static[instanceID]
			if instanceID == "" || !ok {
				errs[i] = ErrUnknownMemberID
				continue
			}
			g.removeAndRebalance(g.members[cur], now, "static member "+instanceID+" removed")
		case !g.pending[lm.MemberID].IsZero():
			delete(g.pending, lm.MemberID)
			g.tryCompleteJoin(now)
		default:
			if err := g.validateMember(lm.MemberID, instanceID); err != nil {
				errs[i] = err
				continue
			}
			g.removeAndRebalance(g.members[lm.MemberID], now, withReason("member "+lm.MemberID+" left", lm.Reason))
		}
	}
	return errs
}

// nextDeadline is the earliest time the group must wake up.
func (g *group) nextDeadline() time.Time {
	var next time.Time
	at := func(t time.Time) {
		if !t.IsZero() && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	at(g.joinDeadline)
	at(g.syncDeadline)
	for _, t := range g.pending {
		at(t)
	}
	for _, m := range g.members {
		at(m.deadline)
	}
	return next
}

// onTimer handles every deadline that has passed.
func (g *group) onTimer(now time.Time) {
	for id, t := range g.pending {
		if !t.After(now) {
			delete(g.pending, id)
			g.tryCompleteJoin(now)
		}
	}
	for _, id := range slices.Clone(g.order) {
		m := g.members[id]
		if m == nil || m.deadline.IsZero() || m.deadline.After(now) {
			continue
		}
		if !m.isNew && (m.joinDone != nil || m.syncDone != nil) {
			// Waiting members satisfy their heartbeats; the session starts
			// again once they are answered.
			m.deadline = time.Time{}
			continue
		}
		g.log.Debug().Str("member", id).Msg("session expired")
		g.removeAndRebalance(m, now, "member "+id+" session expired")
	}
	if !g.syncDeadline.IsZero() && !g.syncDeadline.After(now) {
		g.syncDeadline = time.Time{}
		if g.generation == g.syncGeneration && (g.state == StateCompletingRebalance || g.state == StateStable) && len(g.pendingSync) > 0 {
			for id := range g.pendingSync {
				g.remove(g.members[id])
			}
			g.maybePrepareRebalance(now, "members did not sync in time")
		}
	}
	if !g.joinDeadline.IsZero() && !g.joinDeadline.After(now) && g.state == StatePreparingRebalance {
		if g.joinInitial && g.newMemberAdded && g.joinRemaining != 0 {
			g.newMemberAdded = false
			delay := min(g.c.cfg.InitialRebalanceDelay, g.joinRemaining)
			g.joinRemaining = max(g.joinRemaining-g.joinDelay, 0)
			g.joinDelay = delay
			g.joinDeadline = now.Add(delay)
		} else {
			g.completeJoin(now)
		}
	}
}

// unload answers every waiting request with NOT_COORDINATOR when this
// broker stops coordinating the group.
func (g *group) unload() {
	close(g.stopped)
	g.state = StateDead
	for _, id := range g.order {
		m := g.members[id]
		g.answerJoin(m, JoinResult{Err: ErrNotCoordinator, MemberID: m.id, Generation: -1})
		g.answerSync(m, SyncResult{Err: ErrNotCoordinator})
	}
	waiters := g.stableWaiters
	g.stableWaiters = nil
	for _, w := range waiters {
		w.abort(ErrNotCoordinator)
	}
}

// describe is the group as DescribeGroups shows it.
func (g *group) describe() GroupDescription {
	d := GroupDescription{Group: g.id, State: g.state.String(), ProtocolType: g.protocolType}
	stable := g.state == StateStable
	if stable {
		d.Protocol = g.protocol
	}
	for _, id := range g.order {
		m := g.members[id]
		md := MemberDescription{MemberID: m.id, ClientID: m.clientID, ClientHost: m.clientHost, Metadata: []byte{}, Assignment: []byte{}}
		if m.instanceID != "" {
			iid := m.instanceID
			md.InstanceID = &iid
		}
		if stable {
			md.Metadata = m.metadata(g.protocol)
			if m.assignment != nil {
				md.Assignment = m.assignment
			}
		}
		d.Members = append(d.Members, md)
	}
	return d
}
