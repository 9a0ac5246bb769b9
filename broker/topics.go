package broker

import (
	"context"
	"fmt"
	"time"

	"github.com/pubg1/pubg1/broker/cluster"
	"github.com/pubg1/pubg1/kproto"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func (b *Broker) createTopicsAPI() kproto.API {
	return kproto.API{Key: kmsg.CreateTopics.Int16(), MinVersion: 0, MaxVersion: 7, Handle: handle(b.createTopics)}
}

func (b *Broker) createTopics(_ context.Context, _ *kproto.Request, r *kmsg.CreateTopicsRequest) kmsg.Response {
	resp := r.ResponseKind().(*kmsg.CreateTopicsResponse)
	deadline := time.Now().Add(time.Duration(r.TimeoutMillis) * time.Millisecond)
	seen := make(map[string]int, len(r.Topics))
	for _, rt := range r.Topics {
		seen[rt.Topic]++
	}
	for _, rt := range r.Topics {
		st := kmsg.NewCreateTopicsResponseTopic()
		st.Topic = rt.Topic
		st.NumPartitions, st.ReplicationFactor = -1, -1
		t, err := b.createRequested(&rt, seen[rt.Topic] > 1, r.ValidateOnly)
		if err == nil {
			st.TopicID = t.id
			if r.ValidateOnly {
				st.TopicID = [16]byte{}
			} else {
				b.awaitLeaders(t.id, deadline)
			}
			st.NumPartitions, st.ReplicationFactor = int32(len(t.parts)), t.replicas
			for _, c := range b.describeTopicConfigs(t.configs, nil, false, false) {
				sc := kmsg.NewCreateTopicsResponseTopicConfig()
				sc.Name, sc.Value, sc.ReadOnly, sc.Source, sc.IsSensitive = c.Name, c.Value, c.ReadOnly, int8(c.Source), c.IsSensitive
				st.Configs = append(st.Configs, sc)
			}
		}
		st.ErrorCode = errorCode(err)
		st.ErrorMessage = errorMessage(err)
		resp.Topics = append(resp.Topics, st)
	}
	return resp
}

func (b *Broker) createRequested(rt *kmsg.CreateTopicsRequestTopic, duplicate, validateOnly bool) (*topic, error) {
	if duplicate {
		return nil, fmt.Errorf("%w: create topics request contains duplicate topic %q", ErrInvalidRequest, rt.Topic)
	}
	partitions, replicas := rt.NumPartitions, rt.ReplicationFactor
	if len(rt.ReplicaAssignment) > 0 {
		if partitions != -1 || replicas != -1 {
			return nil, fmt.Errorf("%w: both replica assignment and partition count or replication factor given", ErrInvalidRequest)
		}
		partitions, replicas = int32(len(rt.ReplicaAssignment)), int16(len(rt.ReplicaAssignment[0].Replicas))
		seen := make(map[int32]bool, partitions)
		for _, a := range rt.ReplicaAssignment {
			if a.Partition < 0 || a.Partition >= partitions || seen[a.Partition] {
				return nil, fmt.Errorf("%w: partitions of the replica assignment must be 0 to %d, each once", ErrInvalidReplicaAssignment, partitions-1)
			}
			seen[a.Partition] = true
			if len(a.Replicas) != int(replicas) {
				return nil, fmt.Errorf("%w: every partition must have the same number of replicas", ErrInvalidReplicaAssignment)
			}
			for _, r := range a.Replicas {
				if !b.knownBroker(r) {
					return nil, fmt.Errorf("%w: unknown broker %d", ErrInvalidReplicaAssignment, r)
				}
			}
		}
	}
	var assign [][]int32
	if len(rt.ReplicaAssignment) > 0 {
		assign = make([][]int32, partitions)
		for _, a := range rt.ReplicaAssignment {
			assign[a.Partition] = a.Replicas
		}
	}
	configs := make(map[string]string, len(rt.Configs))
	for _, c := range rt.Configs {
		if c.Value == nil {
			return nil, fmt.Errorf("%w: null value for config %s", ErrInvalidTopicConfig, c.Name)
		}
		configs[c.Name] = *c.Value
	}
	return b.createTopicAssigned(rt.Topic, partitions, replicas, assign, configs, validateOnly)
}

func (b *Broker) deleteTopicsAPI() kproto.API {
	return kproto.API{Key: kmsg.DeleteTopics.Int16(), MinVersion: 0, MaxVersion: 6, Handle: handle(b.deleteTopics)}
}

func (b *Broker) deleteTopics(_ context.Context, _ *kproto.Request, r *kmsg.DeleteTopicsRequest) kmsg.Response {
	resp := r.ResponseKind().(*kmsg.DeleteTopicsResponse)
	reqs := r.Topics
	if r.Version < 6 {
		reqs = nil
		for _, n := range r.TopicNames {
			reqs = append(reqs, kmsg.DeleteTopicsRequestTopic{Topic: &n})
		}
	}
	for _, rt := range reqs {
		st := kmsg.NewDeleteTopicsResponseTopic()
		st.Topic, st.TopicID = rt.Topic, rt.TopicID
		var t *topic
		var err error
		switch {
		case rt.Topic != nil && rt.TopicID != [16]byte{}:
			err = fmt.Errorf("%w: give a topic name or a topic ID, not both", ErrInvalidRequest)
		case rt.Topic != nil:
			if t = b.topics.get(*rt.Topic); t == nil {
				err = fmt.Errorf("%w: %s", ErrUnknownTopic, *rt.Topic)
			}
		default:
			if t = b.topics.getID(rt.TopicID); t == nil {
				err = ErrUnknownTopicID
			}
		}
		if err == nil {
			name := t.name
			st.Topic, st.TopicID = &name, t.id
			// Kafka drops the groups' offsets of a deleted topic: every
			// broker does it when the deletion reaches its catalog.
			err = b.deleteTopic(t)
		}
		st.ErrorCode = errorCode(err)
		st.ErrorMessage = errorMessage(err)
		resp.Topics = append(resp.Topics, st)
	}
	return resp
}

func (b *Broker) createPartitionsAPI() kproto.API {
	return kproto.API{Key: kmsg.CreatePartitions.Int16(), MinVersion: 0, MaxVersion: 3, Handle: handle(b.createPartitions)}
}

func (b *Broker) createPartitions(_ context.Context, _ *kproto.Request, r *kmsg.CreatePartitionsRequest) kmsg.Response {
	resp := r.ResponseKind().(*kmsg.CreatePartitionsResponse)
	deadline := time.Now().Add(time.Duration(r.TimeoutMillis) * time.Millisecond)
	for _, rt := range r.Topics {
		st := kmsg.NewCreatePartitionsResponseTopic()
		st.Topic = rt.Topic
		err := b.addPartitions(rt.Topic, rt.Count, rt.Assignment, r.ValidateOnly)
		if err == nil && !r.ValidateOnly {
			if t := b.topics.get(rt.Topic); t != nil {
				b.awaitLeaders(t.id, deadline)
			}
		}
		st.ErrorCode = errorCode(err)
		st.ErrorMessage = errorMessage(err)
		resp.Topics = append(resp.Topics, st)
	}
	return resp
}

// addPartitions grows a topic to count partitions.
func (b *Broker) addPartitions(name string, count int32, assignment []kmsg.CreatePartitionsRequestTopicAssignment, validateOnly bool) error {
	b.createMu.Lock()
	defer b.createMu.Unlock()
	t := b.topics.get(name)
	if t == nil {
		return fmt.Errorf("%w: %s", ErrUnknownTopic, name)
	}
	have := int32(len(t.parts))
	if count <= have {
		return fmt.Errorf("%w: topic currently has %d partitions, which is higher than or equal to the requested %d", ErrInvalidPartitions, have, count)
	}
	if assignment != nil && len(assignment) != int(count-have) {
		return fmt.Errorf("%w: %d assignments for %d new partitions", ErrInvalidReplicaAssignment, len(assignment), count-have)
	}
	for _, a := range assignment {
		if len(a.Replicas) != int(t.replicas) {
			return fmt.Errorf("%w: replicas %v for a topic with replication factor %d", ErrInvalidReplicaAssignment, a.Replicas, t.replicas)
		}
		for _, r := range a.Replicas {
			if !b.knownBroker(r) {
				return fmt.Errorf("%w: unknown broker %d", ErrInvalidReplicaAssignment, r)
			}
		}
	}
	if validateOnly {
		return nil
	}
	assign := b.assignReplicas(have, count-have, t.replicas)
	for i, a := range assignment {
		assign[i] = a.Replicas
	}
	if _, err := b.propose(cluster.AddPartitionsCommand(name, have, assign)); err != nil {
		return err
	}
	return b.awaitCatalog(func() bool { t := b.topics.get(name); return t != nil && len(t.parts) == int(count) })
}
