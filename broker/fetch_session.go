package broker

import (
	"math"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// Fetch sessions (KIP-227): a consumer's first Fetch lists every partition
// and gets a session ID back; its later Fetches name only the partitions
// whose fetch offset, limit or leader epoch changed, and the answers hold
// only the partitions with something new to say. The broker keeps each
// session's partitions and what it last told the client about each.

// Session epochs with a meaning of their own in a Fetch request.
const (
	fetchEpochInitial int32 = 0  // a full fetch that asks for a new session
	fetchEpochFinal   int32 = -1 // a full fetch without a session
)

// fetchSessionEvictAfter is Kafka's min.incremental.fetch.session.eviction.ms
// (a constant there too): a session idle this long may be evicted for a
// new one, and a session younger than this may not be evicted for one with
// more partitions.
const fetchSessionEvictAfter = 120 * time.Second

// nextFetchEpoch is the epoch that follows e; it wraps to 1, never to the
// epochs that mean a full fetch.
func nextFetchEpoch(e int32) int32 {
	if e == math.MaxInt32 {
		return 1
	}
	return e + 1
}

// sessionKey names a partition in a fetch session: by topic name in a
// session created by Fetch v7-v12, by topic ID in one created by v13+.
type sessionKey struct {
	topic     string
	topicID   [16]byte
	partition int32
}

func newSessionKey(byTopicID bool, name string, id [16]byte, part int32) sessionKey {
	if byTopicID {
		return sessionKey{topicID: id, partition: part}
	}
	return sessionKey{topic: name, partition: part}
}

// sessionPart is one partition of a fetch session.
type sessionPart struct {
	key sessionKey
	// What the client last asked for.
	fetchOffset int64
	maxBytes    int
	leaderEpoch int32
	// What the client was last told; -1 when it must be told again (a new
	// partition, or one that last answered an error).
	highWatermark, lastStable, logStart int64
	// The topic the key last resolved to: a topic re-created under the
	// same name has another ID, and a session by topic ID tells its old
	// partitions apart from unknown ones by the name.
	topicID   [16]byte
	topicName string
	// sent marks, while an answer is built, a partition that returned
	// records.
	sent bool
}

func newSessionPart(key sessionKey) *sessionPart {
	return &sessionPart{key: key, highWatermark: -1, lastStable: -1, logStart: -1}
}

// note records what an answer says of the partition and reports whether
// the client must be told: as Kafka, when the partition returns records or
// an error, or its high watermark, last stable offset or log start offset
// changed since the client was last told (PubG1 names no preferred read
// replica), or it now reads from another topic of the same name.
func (sp *sessionPart) note(fp *fetchPart) bool {
	out := fp.out
	hw, lso, start := out.HighWatermark, out.LastStableOffset, out.LogStartOffset
	if out.ErrorCode != 0 {
		hw, lso, start = -1, -1, -1
	}
	tell := len(out.RecordBatches) > 0 || out.ErrorCode != 0 || fp.topicID != sp.topicID ||
		hw != sp.highWatermark || lso != sp.lastStable || start != sp.logStart
	sp.highWatermark, sp.lastStable, sp.logStart = hw, lso, start
	sp.topicID = fp.topicID
	if fp.topicName != "" {
		sp.topicName = fp.topicName
	}
	return tell
}

// fetchSession is one client's session.
type fetchSession struct {
	id int32
	// epoch is the epoch the next incremental fetch must carry.
	epoch int32
	// byTopicID: created by Fetch v13+, which names topics by ID; the
	// session's fetches must keep doing so.
	byTopicID         bool
	created, lastUsed time.Time
	// parts are read in this order; those that returned records move to
	// the end, so that a response size limit reached on the first ones
	// does not starve the others.
	parts []*sessionPart
	index map[sessionKey]*sessionPart
}

// fetchSessions is a broker's cache of fetch sessions.
type fetchSessions struct {
	// mu guards everything below and the sessions; it is held for map
	// and slice work only, never while reading partitions or topics.
	mu       sync.Mutex
	max      int
	sessions map[int32]*fetchSession
	// evictAfter is fetchSessionEvictAfter; now is time.Now (tests move
	// both).
	evictAfter time.Duration
	now        func() time.Time
}

func newFetchSessions(slots int) *fetchSessions {
	return &fetchSessions{max: slots, sessions: make(map[int32]*fetchSession), evictAfter: fetchSessionEvictAfter, now: time.Now}
}

// count is the number of sessions cached.
func (c *fetchSessions) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.sessions)
}

// remove closes session id, if it exists.
func (c *fetchSessions) remove(id int32) {
	c.mu.Lock()
	delete(c.sessions, id)
	c.mu.Unlock()
}

// create makes a session of the partitions a full fetch answered, with
// what the answer told the client of each, and returns its ID; 0 when the
// cache is full and no session may be evicted for it.
func (c *fetchSessions) create(byTopicID bool, parts []fetchPart) int32 {
	now := c.now()
	s := &fetchSession{epoch: nextFetchEpoch(fetchEpochInitial), byTopicID: byTopicID, created: now, lastUsed: now,
		index: make(map[sessionKey]*sessionPart, len(parts))}
	for i := range parts {
		fp := &parts[i]
		sp := s.index[fp.key]
		if sp == nil {
			// A partition listed twice is one partition of the session,
			// as in Kafka, where the request's partitions are a map.
			sp = newSessionPart(fp.key)
			s.index[fp.key] = sp
			s.parts = append(s.parts, sp)
		}
		sp.fetchOffset, sp.maxBytes, sp.leaderEpoch = fp.offset, fp.maxBytes, fp.leaderEpoch
		sp.note(fp)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.sessions) >= c.max && !c.evictFor(len(s.parts), now) {
		return 0
	}
	s.id = c.newID()
	c.sessions[s.id] = s
	return s.id
}

// newID picks an unused random session ID. It is positive, as Kafka's
// are: franz-go takes an ID of 0 or less for no session.
func (c *fetchSessions) newID() int32 {
	for {
		id := rand.Int32N(math.MaxInt32) + 1
		if _, ok := c.sessions[id]; !ok {
			return id
		}
	}
}

// evictFor makes room, if it may, for a new session of size partitions,
// by the rule of Kafka's FetchSessionCache (KIP-227) for sessions that
// are not a follower's (PubG1 replicates through Raft, so no session is
// privileged): the least recently used session goes if it has been idle
// for longer than evictAfter; failing that, the session with the fewest
// partitions among those created more than evictAfter ago goes if the new
// one has more partitions (an equal number does not evict). Recent Kafka
// shards its cache in eight and evicts within a shard; this cache is one
// shard.
func (c *fetchSessions) evictFor(size int, now time.Time) bool {
	var lru, smallest *fetchSession
	for _, s := range c.sessions {
		if lru == nil || s.lastUsed.Before(lru.lastUsed) || (s.lastUsed.Equal(lru.lastUsed) && s.id < lru.id) {
			lru = s
		}
		if now.Sub(s.created) <= c.evictAfter {
			continue
		}
		if smallest == nil || len(s.parts) < len(smallest.parts) || (len(s.parts) == len(smallest.parts) && s.id < smallest.id) {
			smallest = s
		}
	}
	var victim *fetchSession
	switch {
	case lru != nil && now.Sub(lru.lastUsed) > c.evictAfter:
		victim = lru
	case smallest != nil && size > len(smallest.parts):
		victim = smallest
	default:
		return false
	}
	delete(c.sessions, victim.id)
	return true
}

// update applies an incremental fetch to its session: it checks the
// session and epoch, adds the partitions the request lists or updates
// their fetch offset, limit and leader epoch, drops the forgotten ones and
// advances the epoch. It returns the session and a copy of its partitions
// in fetch order, or a nil session when the request left it without
// partitions and so closed it (Kafka then answers the request without a
// session).
func (c *fetchSessions) update(r *kmsg.FetchRequest) (*fetchSession, []sessionPart, error) {
	byTopicID := r.Version >= 13
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.sessions[r.SessionID]
	switch {
	case s == nil:
		return nil, nil, ErrFetchSessionNotFound
	case r.SessionEpoch != s.epoch:
		return nil, nil, ErrInvalidFetchSessionEpoch
	case s.byTopicID != byTopicID:
		return nil, nil, ErrFetchSessionTopicID
	}
	for i := range r.Topics {
		rt := &r.Topics[i]
		for j := range rt.Partitions {
			rp := &rt.Partitions[j]
			key := newSessionKey(byTopicID, rt.Topic, rt.TopicID, rp.Partition)
			sp := s.index[key]
			if sp == nil {
				sp = newSessionPart(key)
				s.index[key] = sp
				s.parts = append(s.parts, sp)
			}
			sp.fetchOffset, sp.maxBytes, sp.leaderEpoch = rp.FetchOffset, int(rp.PartitionMaxBytes), rp.CurrentLeaderEpoch
		}
	}
	forgot := false
	for i := range r.ForgottenTopics {
		ft := &r.ForgottenTopics[i]
		for _, p := range ft.Partitions {
			key := newSessionKey(byTopicID, ft.Topic, ft.TopicID, p)
			if _, ok := s.index[key]; ok {
				delete(s.index, key)
				forgot = true
			}
		}
	}
	if forgot {
		kept := s.parts[:0]
		for _, sp := range s.parts {
			if s.index[sp.key] == sp {
				kept = append(kept, sp)
			}
		}
		clear(s.parts[len(kept):])
		s.parts = kept
	}
	if len(s.parts) == 0 {
		delete(c.sessions, s.id)
		return nil, nil, nil
	}
	s.lastUsed = c.now()
	s.epoch = nextFetchEpoch(s.epoch)
	parts := make([]sessionPart, len(s.parts))
	for i, sp := range s.parts {
		parts[i] = *sp
	}
	return s, parts, nil
}

// answer completes the answer f to the incremental fetch of s that came
// with epoch: it keeps the partitions the client must be told about, in
// session order, records what they say, and moves those that returned
// records to the end of the session. A fetch of the session that came
// later has advanced the epoch meanwhile; as in Kafka, this one is then
// refused.
func (c *fetchSessions) answer(s *fetchSession, epoch int32, f *fetchRequest) {
	c.mu.Lock()
	defer c.mu.Unlock()
	resp := f.resp
	resp.SessionID = s.id
	if s.epoch != nextFetchEpoch(epoch) {
		resp.ErrorCode = errorCode(ErrInvalidFetchSessionEpoch)
		return
	}
	moved := false
	for i := range f.parts {
		fp := &f.parts[i]
		sp := s.index[fp.key]
		if sp == nil || !sp.note(fp) {
			continue
		}
		if len(fp.out.RecordBatches) > 0 {
			sp.sent, moved = true, true
		}
		// Consecutive partitions of one topic share its entry, as in
		// Kafka's answers.
		if n := len(resp.Topics); n == 0 || !sameTopic(&resp.Topics[n-1], fp.key) {
			st := kmsg.NewFetchResponseTopic()
			st.Topic, st.TopicID = fp.key.topic, fp.key.topicID
			resp.Topics = append(resp.Topics, st)
		}
		st := &resp.Topics[len(resp.Topics)-1]
		st.Partitions = append(st.Partitions, *fp.out)
	}
	if moved {
		s.moveSentToEnd()
	}
}

func sameTopic(st *kmsg.FetchResponseTopic, key sessionKey) bool {
	return st.Topic == key.topic && st.TopicID == key.topicID
}

// moveSentToEnd moves the partitions marked sent to the end of the
// session, keeping the order within each group.
func (s *fetchSession) moveSentToEnd() {
	var sent []*sessionPart
	n := 0
	for _, sp := range s.parts {
		if sp.sent {
			sp.sent = false
			sent = append(sent, sp)
			continue
		}
		s.parts[n] = sp
		n++
	}
	copy(s.parts[n:], sent)
}

// incrementalFetch fills f with every partition of the request's session,
// in session order, after applying the request to the session; the
// partitions the client must be told about are picked once the reads are
// done. A request that leaves the session empty is answered in full
// without a session.
func (b *Broker) incrementalFetch(f *fetchRequest, r *kmsg.FetchRequest) error {
	s, parts, err := b.sessions.update(r)
	if err != nil {
		return err
	}
	if s == nil {
		b.fullFetch(f, r)
		return nil
	}
	outs := make([]kmsg.FetchResponseTopicPartition, len(parts))
	f.parts = make([]fetchPart, len(parts))
	for i := range parts {
		sp := &parts[i]
		out := &outs[i]
		out.Default()
		out.Partition = sp.key.partition
		fp := &f.parts[i]
		*fp = fetchPart{offset: sp.fetchOffset, maxBytes: sp.maxBytes, out: out, key: sp.key, leaderEpoch: sp.leaderEpoch}
		var t *topic
		if t, fp.err = b.sessionTopic(s.byTopicID, sp); fp.err == nil {
			fp.topicName, fp.topicID = t.name, t.id
			if fp.p, fp.err = leaderPartition(t, sp.key.partition); fp.err == nil {
				fp.err = checkLeaderEpoch(sp.leaderEpoch, fp.p.Offsets().LeaderEpoch)
			}
		}
	}
	epoch := r.SessionEpoch
	f.finish = func() { b.sessions.answer(s, epoch, f) }
	return nil
}

// sessionTopic finds the topic of a session partition. In a session by
// topic ID, an ID that is gone while a topic of the name it last had
// exists was deleted and re-created: as Kafka, that is
// INCONSISTENT_TOPIC_ID (the client starts a new session with the new ID),
// and an ID that is simply unknown is UNKNOWN_TOPIC_ID.
func (b *Broker) sessionTopic(byTopicID bool, sp *sessionPart) (*topic, error) {
	if !byTopicID {
		return b.topicByRequest(false, sp.key.topic, [16]byte{})
	}
	if t := b.topics.getID(sp.key.topicID); t != nil {
		return t, nil
	}
	if sp.topicName != "" && b.topics.get(sp.topicName) != nil {
		return nil, ErrInconsistentTopicID
	}
	return nil, ErrUnknownTopicID
}
