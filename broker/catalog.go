package broker

import (
	"crypto/rand"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/pubg1/pubg1/broker/cluster"
	"github.com/pubg1/pubg1/broker/partition"
)

// topic is an immutable view of one topic: a config change replaces it.
type topic struct {
	name      string
	id        [16]byte
	parts     []partition.Partition
	configs   map[string]string // explicitly set configs only
	internal  bool
	replicas  int16
	effective effectiveConfig
	// Each partition's replica set and the leader the metadata names.
	assign  [][]int32
	leaders []cluster.Leader
}

// catalog holds the broker's topics.
type catalog struct {
	mu     sync.RWMutex
	byName map[string]*topic
	byID   map[[16]byte]*topic
}

func newCatalog() *catalog {
	return &catalog{byName: make(map[string]*topic), byID: make(map[[16]byte]*topic)}
}

func (c *catalog) get(name string) *topic {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.byName[name]
}

func (c *catalog) getID(id [16]byte) *topic {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.byID[id]
}

// list returns all topics sorted by name.
func (c *catalog) list() []*topic {
	c.mu.RLock()
	out := make([]*topic, 0, len(c.byName))
	for _, t := range c.byName {
		out = append(out, t)
	}
	c.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// collision returns an existing topic whose name equals name once '.' and
// '_' are treated alike (they clash in metric names, so Kafka forbids it).
func (c *catalog) collision(name string) string {
	if !strings.ContainsAny(name, "._") {
		return ""
	}
	unified := strings.ReplaceAll(name, ".", "_")
	c.mu.RLock()
	defer c.mu.RUnlock()
	for other := range c.byName {
		if other != name && strings.ReplaceAll(other, ".", "_") == unified {
			return other
		}
	}
	return ""
}

func (c *catalog) put(t *topic) {
	c.mu.Lock()
	c.byName[t.name] = t
	c.byID[t.id] = t
	c.mu.Unlock()
}

func (c *catalog) remove(t *topic) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.byName[t.name] != t {
		return false
	}
	delete(c.byName, t.name)
	delete(c.byID, t.id)
	return true
}

// topicByRequest finds a request's topic by ID (requests that name topics
// by ID, such as Produce v13+ and Fetch v13+) or by name.
func (b *Broker) topicByRequest(byID bool, name string, id [16]byte) (*topic, error) {
	if byID {
		if t := b.topics.getID(id); t != nil {
			return t, nil
		}
		return nil, ErrUnknownTopicID
	}
	if t := b.topics.get(name); t != nil {
		return t, nil
	}
	return nil, ErrUnknownTopic
}

func newTopicID() ([16]byte, error) {
	var id [16]byte
	for id == ([16]byte{}) {
		if _, err := rand.Read(id[:]); err != nil {
			return id, fmt.Errorf("generating topic ID: %w", err)
		}
		id[6] = id[6]&0x0f | 0x40 // a version 4 UUID, as Kafka makes
		id[8] = id[8]&0x3f | 0x80
	}
	return id, nil
}

// createTopic validates and, unless validateOnly, creates a topic with
// replicas spread over the brokers.
func (b *Broker) createTopic(name string, partitions int32, replicas int16, configs map[string]string, validateOnly bool) (*topic, error) {
	return b.createTopicAssigned(name, partitions, replicas, nil, configs, validateOnly)
}

// createTopicAssigned is createTopic with an optional replica assignment
// (already checked). It holds the create lock so that two creations of one
// name cannot race.
func (b *Broker) createTopicAssigned(name string, partitions int32, replicas int16, assign [][]int32, configs map[string]string, validateOnly bool) (*topic, error) {
	if err := validTopicName(name); err != nil {
		return nil, err
	}
	if partitions == -1 {
		partitions = b.cfg.DefaultPartitions
	}
	if replicas == -1 {
		replicas = b.defaultReplication()
	}
	if partitions <= 0 {
		return nil, fmt.Errorf("%w: number of partitions must be larger than 0", ErrInvalidPartitions)
	}
	if replicas <= 0 {
		return nil, fmt.Errorf("%w: replication factor must be larger than 0", ErrInvalidReplication)
	}
	if n := b.brokerCount(); int(replicas) > n {
		return nil, fmt.Errorf("%w: replication factor: %d larger than available brokers: %d", ErrInvalidReplication, replicas, n)
	}
	for k, v := range configs {
		if err := validateTopicConfig(k, v); err != nil {
			return nil, err
		}
	}
	b.createMu.Lock()
	defer b.createMu.Unlock()
	if b.topics.get(name) != nil {
		return nil, fmt.Errorf("%w: topic '%s' already exists", ErrTopicExists, name)
	}
	if other := b.topics.collision(name); other != "" {
		return nil, fmt.Errorf("%w: topic '%s' collides with existing topic: %s", ErrInvalidTopic, name, other)
	}
	id, err := newTopicID()
	if err != nil {
		return nil, err
	}
	if validateOnly {
		return &topic{name: name, id: id, parts: make([]partition.Partition, partitions), configs: configs, replicas: replicas}, nil
	}
	if assign == nil {
		assign = b.assignReplicas(0, partitions, replicas)
	}
	if _, err := b.propose(cluster.CreateTopicCommand(name, id, assign, configs)); err != nil {
		return nil, err
	}
	if err := b.awaitCatalog(func() bool { return b.topics.getID(id) != nil }); err != nil {
		return nil, err
	}
	b.log.Info().Str("topic", name).Int32("partitions", partitions).Int16("replicas", replicas).Msg("topic created")
	return b.topics.getID(id), nil
}

// deleteTopic removes a topic and its data.
func (b *Broker) deleteTopic(t *topic) error {
	b.createMu.Lock()
	defer b.createMu.Unlock()
	// An unknown topic here means a retried proposal already deleted it.
	if _, err := b.propose(cluster.DeleteTopicCommand(t.name, t.id)); err != nil && !errors.Is(err, ErrUnknownTopic) {
		return err
	}
	return b.awaitCatalog(func() bool { return b.topics.getID(t.id) == nil })
}

// alterTopicConfigs replaces the explicitly set configs of a topic.
func (b *Broker) alterTopicConfigs(t *topic, configs map[string]string) error {
	b.createMu.Lock()
	defer b.createMu.Unlock()
	if b.topics.get(t.name) != t {
		return fmt.Errorf("%w: %s", ErrUnknownTopic, t.name)
	}
	if _, err := b.propose(cluster.SetConfigsCommand(t.name, configs)); err != nil {
		return err
	}
	return b.awaitCatalog(func() bool { return b.topics.get(t.name) != t })
}

// validTopicName applies Kafka's rules for topic names.
func validTopicName(name string) error {
	if name == "" || name == "." || name == ".." {
		return fmt.Errorf("%w: topic name %q is illegal", ErrInvalidTopic, name)
	}
	if len(name) > 249 {
		return fmt.Errorf("%w: topic name is longer than 249 characters", ErrInvalidTopic)
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("%w: topic name %q contains characters other than ASCII alphanumerics, '.', '_' and '-'", ErrInvalidTopic, name)
		}
	}
	return nil
}

// leaderPartition finds a partition this broker leads: an unknown topic or
// partition is ErrUnknownTopic, one led elsewhere partition.ErrNotLeader.
func leaderPartition(t *topic, n int32) (partition.Partition, error) {
	if t == nil || n < 0 || int(n) >= len(t.parts) {
		return nil, ErrUnknownTopic
	}
	p := t.parts[n]
	if !p.IsLeader() {
		return nil, partition.ErrNotLeader
	}
	return p, nil
}
