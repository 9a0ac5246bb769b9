package broker

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/pubg1/pubg1/broker/cluster"
	"github.com/pubg1/pubg1/broker/partition"
	"github.com/pubg1/pubg1/broker/storage"
)

// keyTopic prefixes the stored record of each topic, followed by its name.
const keyTopic = "topic/"

// topic is an immutable view of one topic: a config change replaces it.
type topic struct {
	name      string
	id        [16]byte
	parts     []partition.Partition
	configs   map[string]string // explicitly set configs only
	internal  bool
	replicas  int16
	effective effectiveConfig
	// In a cluster: each partition's replica set and reported leader.
	assign  [][]int32
	leaders []cluster.Leader
}

// storedTopic is a topic's durable record.
type storedTopic struct {
	ID         [16]byte          `json:"id"`
	Partitions int32             `json:"partitions"`
	Configs    map[string]string `json:"configs,omitempty"`
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

// loadTopics opens every stored topic.
func (b *Broker) loadTopics() error {
	var recs []struct {
		name string
		st   storedTopic
	}
	err := b.store.Range([]byte(keyTopic), func(k, v []byte) bool {
		var st storedTopic
		if err := json.Unmarshal(v, &st); err != nil {
			b.log.Error().Err(err).Bytes("key", k).Msg("skipping unreadable topic record")
			return true
		}
		recs = append(recs, struct {
			name string
			st   storedTopic
		}{string(k[len(keyTopic):]), st})
		return true
	})
	if err != nil {
		return fmt.Errorf("reading topics: %w", err)
	}
	for _, r := range recs {
		t, err := b.openTopic(r.name, r.st)
		if err != nil {
			return err
		}
		b.topics.put(t)
	}
	return nil
}

// openTopic opens the partitions of a stored topic.
func (b *Broker) openTopic(name string, st storedTopic) (*topic, error) {
	t := &topic{
		name:      name,
		id:        st.ID,
		configs:   st.Configs,
		internal:  len(name) > 2 && name[:2] == "__",
		replicas:  1,
		effective: b.effective(st.Configs),
	}
	for i := int32(0); i < st.Partitions; i++ {
		p, err := partition.OpenLocal(partition.LocalOptions{
			Store:        b.store,
			Log:          storage.LogID{Topic: st.ID, Partition: i},
			Decompressor: b.decompressor,
		})
		if err != nil {
			return nil, fmt.Errorf("opening %s-%d: %w", name, i, err)
		}
		t.parts = append(t.parts, p)
	}
	return t, nil
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
	st := storedTopic{ID: id, Partitions: partitions, Configs: configs}
	if validateOnly {
		return &topic{name: name, id: id, parts: make([]partition.Partition, partitions), configs: configs, replicas: replicas}, nil
	}
	if b.clustered() {
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
	if err := b.saveTopic(name, st); err != nil {
		return nil, err
	}
	t, err := b.openTopic(name, st)
	if err != nil {
		return nil, err
	}
	b.topics.put(t)
	b.log.Info().Str("topic", name).Int32("partitions", partitions).Msg("topic created")
	return t, nil
}

func (b *Broker) saveTopic(name string, st storedTopic) error {
	v, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("encoding topic %s: %w", name, err)
	}
	if err := storage.WriteKVs(b.store, storage.KV{Key: []byte(keyTopic + name), Value: v}); err != nil {
		return fmt.Errorf("saving topic %s: %w", name, err)
	}
	return nil
}

// deleteTopic removes a topic and its data.
func (b *Broker) deleteTopic(t *topic) error {
	b.createMu.Lock()
	defer b.createMu.Unlock()
	if b.clustered() {
		// An unknown topic here means a retried proposal already deleted it.
		if _, err := b.propose(cluster.DeleteTopicCommand(t.name, t.id)); err != nil && !errors.Is(err, ErrUnknownTopic) {
			return err
		}
		return b.awaitCatalog(func() bool { return b.topics.getID(t.id) == nil })
	}
	if !b.topics.remove(t) {
		return fmt.Errorf("%w: %s", ErrUnknownTopic, t.name)
	}
	if err := storage.WriteKVs(b.store, storage.KV{Key: []byte(keyTopic + t.name)}); err != nil {
		return fmt.Errorf("deleting topic %s: %w", t.name, err)
	}
	for i, p := range t.parts {
		if err := p.Delete(); err != nil {
			b.log.Error().Err(err).Str("topic", t.name).Int("partition", i).Msg("deleting partition data")
		}
	}
	b.log.Info().Str("topic", t.name).Msg("topic deleted")
	return nil
}

// alterTopicConfigs replaces the explicitly set configs of a topic.
func (b *Broker) alterTopicConfigs(t *topic, configs map[string]string) error {
	b.createMu.Lock()
	defer b.createMu.Unlock()
	if b.topics.get(t.name) != t {
		return fmt.Errorf("%w: %s", ErrUnknownTopic, t.name)
	}
	if b.clustered() {
		if _, err := b.propose(cluster.SetConfigsCommand(t.name, configs)); err != nil {
			return err
		}
		return b.awaitCatalog(func() bool { return b.topics.get(t.name) != t })
	}
	if err := b.saveTopic(t.name, storedTopic{ID: t.id, Partitions: int32(len(t.parts)), Configs: configs}); err != nil {
		return err
	}
	nt := *t
	nt.configs = configs
	nt.effective = b.effective(configs)
	b.topics.put(&nt)
	return nil
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
