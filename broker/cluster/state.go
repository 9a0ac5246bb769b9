// Package cluster is the replicated cluster metadata of a PubG1 cluster:
// topics, their configs and replica assignments, partition leaders and
// epochs, the broker registry and producer ID blocks. One Raft group over
// all brokers holds it (Kafka's KRaft model); every broker applies it and
// serves Metadata from its own copy.
package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
)

// Errors of the package; commands that fail validation return them.
var (
	ErrTopicExists    = errors.New("topic already exists")
	ErrUnknownTopic   = errors.New("unknown topic")
	ErrTopicCollision = errors.New("topic name collides with an existing topic")
	ErrNotLeader      = errors.New("not the metadata leader")
	ErrClosed         = errors.New("cluster: closed")
	ErrBadCommand     = errors.New("cluster: bad command")
	// ErrNotApplied is a proposal the leader could not commit (its Raft
	// refused or timed out): nothing was applied, and it may be retried.
	ErrNotApplied  = errors.New("cluster: proposal not applied")
	ErrWrongBroker = errors.New("cluster: data directory of another broker")
)

// Leader is a partition's current leader and epoch as its Raft group
// reported it; Leader is -1 while unknown.
type Leader struct {
	Leader int32 `json:"leader"`
	Epoch  int32 `json:"epoch"`
	// CatchingUp are replicas out of the ISR, as their leader reported:
	// they lost their state and are non-voters of the partition's Raft
	// group until they have caught up.
	CatchingUp []int32 `json:"catching_up,omitempty"`
}

// Topic is one topic's metadata.
type Topic struct {
	Name     string            `json:"name"`
	ID       [16]byte          `json:"id"`
	Configs  map[string]string `json:"configs,omitempty"`
	Replicas [][]int32         `json:"replicas"` // per partition
	Leaders  []Leader          `json:"leaders"`  // per partition
}

// State is the whole cluster metadata. A State handed out is never
// modified: applying a command builds a new one (copy on write), so readers
// need no lock.
type State struct {
	ClusterID      string            `json:"cluster_id"`
	Brokers        map[int32]string  `json:"brokers"`
	Topics         map[string]*Topic `json:"topics"`
	NextProducerID int64             `json:"next_producer_id"`
	// Fenced are the brokers the metadata leader cannot reach: they are
	// left out of the broker list clients get, as Kafka leaves out fenced
	// brokers, until they answer again or restart.
	Fenced map[int32]bool `json:"fenced,omitempty"`
	// Incarnations are the data directory IDs the brokers last started
	// with. A broker that starts with another ID lost its data: its
	// replicas must catch up before they vote or lead.
	Incarnations map[int32]string `json:"incarnations,omitempty"`
}

func emptyState() *State {
	return &State{Brokers: map[int32]string{}, Topics: map[string]*Topic{}}
}

// TopicByID finds a topic by its ID.
func (s *State) TopicByID(id [16]byte) *Topic {
	for _, t := range s.Topics {
		if t.ID == id {
			return t
		}
	}
	return nil
}

// clone copies the maps one level deep; topics are replaced, not edited.
func (s *State) clone() *State {
	c := *s
	c.Brokers = maps.Clone(s.Brokers)
	c.Topics = maps.Clone(s.Topics)
	c.Fenced = maps.Clone(s.Fenced)
	c.Incarnations = maps.Clone(s.Incarnations)
	return &c
}

// Command kinds.
const (
	cmdInit             = "init"
	cmdCreateTopic      = "create_topic"
	cmdDeleteTopic      = "delete_topic"
	cmdSetConfigs       = "set_configs"
	cmdAddPartitions    = "add_partitions"
	cmdSetLeader        = "set_leader"
	cmdSetCatchingUp    = "set_catching_up"
	cmdAllocProducerIDs = "alloc_producer_ids"
	cmdBrokerStarted    = "broker_started"
	cmdFenceBroker      = "fence_broker"
	cmdUnfenceBroker    = "unfence_broker"
)

// Command is one change to the metadata.
type Command struct {
	Kind      string            `json:"kind"`
	ClusterID string            `json:"cluster_id,omitempty"`
	Brokers   map[int32]string  `json:"brokers,omitempty"`
	Topic     string            `json:"topic,omitempty"`
	TopicID   [16]byte          `json:"topic_id,omitempty"`
	Configs   map[string]string `json:"configs,omitempty"`
	Replicas  [][]int32         `json:"replicas,omitempty"`
	Partition int32             `json:"partition,omitempty"`
	Leader    int32             `json:"leader,omitempty"`
	Epoch     int32             `json:"epoch,omitempty"`
	Count     int64             `json:"count,omitempty"`
	// Incarnation is the data directory ID of a starting broker.
	Incarnation string `json:"incarnation,omitempty"`
	// Relayed is the command a relay request (kind cmdRelay, never
	// applied) asks a broker to forward to its metadata leader.
	Relayed *Command `json:"relayed,omitempty"`
}

// Result is a command's outcome.
type Result struct {
	Err string `json:"err,omitempty"`
	// Code names the sentinel error, so that it survives forwarding.
	Code  string `json:"code,omitempty"`
	Value int64  `json:"value,omitempty"`
	// Index is the command's Raft index, so that a forwarding broker can
	// wait until it has applied it too.
	Index uint64 `json:"index,omitempty"`
	// Up answers a peer view request: the brokers the answering broker
	// has heard from recently.
	Up []int32 `json:"up,omitempty"`
}

var codes = map[string]error{
	"exists": ErrTopicExists, "unknown": ErrUnknownTopic, "collision": ErrTopicCollision, "not_leader": ErrNotLeader, "bad": ErrBadCommand,
	"not_applied": ErrNotApplied,
}

func resultOf(err error) Result {
	if err == nil {
		return Result{}
	}
	for code, e := range codes {
		if errors.Is(err, e) {
			return Result{Err: err.Error(), Code: code}
		}
	}
	return Result{Err: err.Error(), Code: "bad"}
}

// Error rebuilds the error of a result.
func (r Result) Error() error {
	if r.Err == "" {
		return nil
	}
	if e, ok := codes[r.Code]; ok {
		if r.Err == e.Error() {
			return e
		}
		return fmt.Errorf("%w: %s", e, strings.TrimPrefix(r.Err, e.Error()+": "))
	}
	return errors.New(r.Err)
}

// apply computes the state after cmd. It is deterministic: every broker
// applies the same commands in the same order and reaches the same state.
func apply(s *State, cmd *Command) (*State, Result) {
	next := s.clone()
	var err error
	var value int64
	switch cmd.Kind {
	case cmdInit:
		if next.ClusterID == "" {
			next.ClusterID = cmd.ClusterID
		}
		for id, addr := range cmd.Brokers {
			next.Brokers[id] = addr
		}
	case cmdCreateTopic:
		err = createTopic(next, cmd)
	case cmdDeleteTopic:
		t := next.Topics[cmd.Topic]
		if t == nil || (cmd.TopicID != [16]byte{} && t.ID != cmd.TopicID) {
			err = fmt.Errorf("%w: %s", ErrUnknownTopic, cmd.Topic)
			break
		}
		delete(next.Topics, cmd.Topic)
	case cmdSetConfigs:
		t := next.Topics[cmd.Topic]
		if t == nil {
			err = fmt.Errorf("%w: %s", ErrUnknownTopic, cmd.Topic)
			break
		}
		nt := *t
		nt.Configs = maps.Clone(cmd.Configs)
		next.Topics[cmd.Topic] = &nt
	case cmdAddPartitions:
		t := next.Topics[cmd.Topic]
		if t == nil {
			err = fmt.Errorf("%w: %s", ErrUnknownTopic, cmd.Topic)
			break
		}
		switch have := int32(len(t.Replicas)); {
		case have == cmd.Partition+int32(len(cmd.Replicas)):
			return s, Result{} // a retried proposal that was applied already
		case have != cmd.Partition:
			err = fmt.Errorf("%w: topic has %d partitions, not %d", ErrBadCommand, have, cmd.Partition)
		}
		if err != nil {
			break
		}
		nt := *t
		nt.Replicas = append(slices.Clone(t.Replicas), cmd.Replicas...)
		nt.Leaders = slices.Clone(t.Leaders)
		for range cmd.Replicas {
			nt.Leaders = append(nt.Leaders, Leader{Leader: -1})
		}
		next.Topics[cmd.Topic] = &nt
	case cmdSetLeader:
		t := next.TopicByID(cmd.TopicID)
		if t == nil || cmd.Partition < 0 || int(cmd.Partition) >= len(t.Leaders) {
			err = fmt.Errorf("%w: partition %d", ErrUnknownTopic, cmd.Partition)
			break
		}
		// An older epoch's report can arrive after a newer one's.
		if cur := t.Leaders[cmd.Partition]; cmd.Epoch < cur.Epoch || (cmd.Epoch == cur.Epoch && cur.Leader == cmd.Leader) {
			return s, Result{}
		}
		nt := *t
		nt.Leaders = slices.Clone(t.Leaders)
		nt.Leaders[cmd.Partition] = Leader{Leader: cmd.Leader, Epoch: cmd.Epoch}
		next.Topics[t.Name] = &nt
	case cmdSetCatchingUp:
		t := next.TopicByID(cmd.TopicID)
		if t == nil || cmd.Partition < 0 || int(cmd.Partition) >= len(t.Leaders) {
			err = fmt.Errorf("%w: partition %d", ErrUnknownTopic, cmd.Partition)
			break
		}
		// Only the current leader's report counts.
		cur := t.Leaders[cmd.Partition]
		if cur.Leader != cmd.Leader || cur.Epoch != cmd.Epoch {
			err = fmt.Errorf("%w: broker %d does not lead partition %d at epoch %d", ErrBadCommand, cmd.Leader, cmd.Partition, cmd.Epoch)
			break
		}
		var ids []int32
		if len(cmd.Replicas) > 0 {
			ids = slices.Clone(cmd.Replicas[0])
		}
		nt := *t
		nt.Leaders = slices.Clone(t.Leaders)
		nt.Leaders[cmd.Partition].CatchingUp = ids
		next.Topics[t.Name] = &nt
	case cmdFenceBroker:
		if next.Fenced[cmd.Leader] {
			return s, Result{}
		}
		if next.Fenced == nil {
			next.Fenced = map[int32]bool{}
		}
		next.Fenced[cmd.Leader] = true
	case cmdUnfenceBroker:
		if !next.Fenced[cmd.Leader] {
			return s, Result{}
		}
		delete(next.Fenced, cmd.Leader)
	case cmdBrokerStarted:
		delete(next.Fenced, cmd.Leader)
		if cmd.Incarnation != "" {
			if next.Incarnations == nil {
				next.Incarnations = map[int32]string{}
			}
			next.Incarnations[cmd.Leader] = cmd.Incarnation
		}
		// A broker that has just started leads nothing yet: whatever it
		// led before it stopped shows as unavailable until a new leader
		// reports.
		for name, t := range next.Topics {
			var nt *Topic
			for i, l := range t.Leaders {
				if l.Leader != cmd.Leader {
					continue
				}
				if nt == nil {
					c := *t
					c.Leaders = slices.Clone(t.Leaders)
					nt = &c
				}
				nt.Leaders[i].Leader = -1
			}
			if nt != nil {
				next.Topics[name] = nt
			}
		}
	case cmdAllocProducerIDs:
		if cmd.Count <= 0 {
			err = fmt.Errorf("%w: allocating %d producer IDs", ErrBadCommand, cmd.Count)
			break
		}
		value = next.NextProducerID
		next.NextProducerID += cmd.Count
	default:
		err = fmt.Errorf("%w: unknown command %q", ErrBadCommand, cmd.Kind)
	}
	if err != nil {
		return s, resultOf(err)
	}
	return next, Result{Value: value}
}

func createTopic(s *State, cmd *Command) error {
	if t, ok := s.Topics[cmd.Topic]; ok {
		if t.ID == cmd.TopicID {
			return nil // a retried proposal that was applied already
		}
		return fmt.Errorf("%w: topic '%s' already exists", ErrTopicExists, cmd.Topic)
	}
	if strings.ContainsAny(cmd.Topic, "._") {
		unified := strings.ReplaceAll(cmd.Topic, ".", "_")
		for other := range s.Topics {
			if strings.ReplaceAll(other, ".", "_") == unified {
				return fmt.Errorf("%w: topic '%s' collides with existing topic: %s", ErrTopicCollision, cmd.Topic, other)
			}
		}
	}
	if len(cmd.Replicas) == 0 {
		return fmt.Errorf("%w: a topic needs partitions", ErrBadCommand)
	}
	leaders := make([]Leader, len(cmd.Replicas))
	for i := range leaders {
		leaders[i] = Leader{Leader: -1}
	}
	s.Topics[cmd.Topic] = &Topic{Name: cmd.Topic, ID: cmd.TopicID, Configs: maps.Clone(cmd.Configs), Replicas: cmd.Replicas, Leaders: leaders}
	return nil
}

func encodeState(s *State) ([]byte, error) { return json.Marshal(s) }

func decodeState(b []byte) (*State, error) {
	s := emptyState()
	if err := json.Unmarshal(b, s); err != nil {
		return nil, fmt.Errorf("cluster: decoding state: %w", err)
	}
	if s.Brokers == nil {
		s.Brokers = map[int32]string{}
	}
	if s.Topics == nil {
		s.Topics = map[string]*Topic{}
	}
	return s, nil
}

// InitCommand records the cluster ID (the first one proposed wins) and the
// brokers.
func InitCommand(clusterID string, brokers map[int32]string) *Command {
	return &Command{Kind: cmdInit, ClusterID: clusterID, Brokers: brokers}
}

// CreateTopicCommand creates a topic with the given replica sets.
func CreateTopicCommand(name string, id [16]byte, replicas [][]int32, configs map[string]string) *Command {
	return &Command{Kind: cmdCreateTopic, Topic: name, TopicID: id, Replicas: replicas, Configs: configs}
}

// DeleteTopicCommand deletes a topic, if it still has this ID.
func DeleteTopicCommand(name string, id [16]byte) *Command {
	return &Command{Kind: cmdDeleteTopic, Topic: name, TopicID: id}
}

// SetConfigsCommand replaces a topic's configs.
func SetConfigsCommand(name string, configs map[string]string) *Command {
	return &Command{Kind: cmdSetConfigs, Topic: name, Configs: configs}
}

// AddPartitionsCommand grows a topic from partitions to partitions plus
// len(replicas), with the given replica sets.
func AddPartitionsCommand(name string, partitions int32, replicas [][]int32) *Command {
	return &Command{Kind: cmdAddPartitions, Topic: name, Partition: partitions, Replicas: replicas}
}

// SetLeaderCommand reports a partition's leader and epoch.
func SetLeaderCommand(topicID [16]byte, partition, leader, epoch int32) *Command {
	return &Command{Kind: cmdSetLeader, TopicID: topicID, Partition: partition, Leader: leader, Epoch: epoch}
}

// SetCatchingUpCommand reports, as a partition's leader at epoch, the
// replicas that are out of its ISR while they catch up.
func SetCatchingUpCommand(topicID [16]byte, partition, leader, epoch int32, ids []int32) *Command {
	return &Command{Kind: cmdSetCatchingUp, TopicID: topicID, Partition: partition, Leader: leader, Epoch: epoch, Replicas: [][]int32{ids}}
}

// BrokerStartedCommand records that a broker has (re)started, with the ID
// of its data directory, and so leads no partition until its Raft groups
// elect it again.
func BrokerStartedCommand(id int32, incarnation string) *Command {
	return &Command{Kind: cmdBrokerStarted, Leader: id, Incarnation: incarnation}
}

// FenceBrokerCommand marks a broker unreachable; UnfenceBrokerCommand
// clears the mark.
func FenceBrokerCommand(id int32) *Command { return &Command{Kind: cmdFenceBroker, Leader: id} }

// UnfenceBrokerCommand clears a broker's fence.
func UnfenceBrokerCommand(id int32) *Command { return &Command{Kind: cmdUnfenceBroker, Leader: id} }

// AllocProducerIDsCommand reserves count producer IDs; the result's Value
// is the first.
func AllocProducerIDsCommand(count int64) *Command {
	return &Command{Kind: cmdAllocProducerIDs, Count: count}
}

// LeaderID is the broker leading the metadata group, or -1.
func (c *Controller) LeaderID() int32 {
	_, id := c.raft().LeaderWithID()
	n, err := strconv.Atoi(string(id))
	if err != nil || id == "" {
		return -1
	}
	return int32(n)
}
