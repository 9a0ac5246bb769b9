package broker

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/pubg1/pubg1/broker/cluster"
	"github.com/pubg1/pubg1/broker/partition"
	"github.com/pubg1/pubg1/kproto"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// allTopicOperations is the authorized-operations bit set of a topic when
// there is no authorizer: READ, WRITE, CREATE, DELETE, ALTER, DESCRIBE,
// DESCRIBE_CONFIGS, ALTER_CONFIGS.
const allTopicOperations = 1<<3 | 1<<4 | 1<<5 | 1<<6 | 1<<7 | 1<<8 | 1<<10 | 1<<11

// allClusterOperations: CREATE, CLUSTER_ACTION, DESCRIBE_CONFIGS,
// ALTER_CONFIGS, IDEMPOTENT_WRITE, ALTER, DESCRIBE.
const allClusterOperations = 1<<5 | 1<<9 | 1<<10 | 1<<11 | 1<<12 | 1<<7 | 1<<8

func (b *Broker) metadataAPI() kproto.API {
	return kproto.API{Key: kmsg.Metadata.Int16(), MinVersion: 0, MaxVersion: 13, Handle: handle(b.metadata)}
}

func (b *Broker) metadata(_ context.Context, req *kproto.Request, r *kmsg.MetadataRequest) kmsg.Response {
	resp := r.ResponseKind().(*kmsg.MetadataResponse)
	// The broker list goes last: a fenced broker that the answer still
	// names as a leader must be in it (see metadataBrokers).
	defer func() {
		leaders := make(map[int32]bool)
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				leaders[p.Leader] = true
			}
		}
		resp.Brokers = b.metadataBrokers(leaders)
	}()
	clusterID := b.currentClusterID()
	resp.ClusterID = &clusterID
	resp.ControllerID = b.controllerID()
	resp.AuthorizedOperations = math.MinInt32
	if r.IncludeClusterAuthorizedOperations {
		resp.AuthorizedOperations = allClusterOperations
	}
	// Version 0 asks for every topic with an empty list; later versions
	// with a null one.
	if r.Topics == nil || (r.Version == 0 && len(r.Topics) == 0) {
		for _, t := range b.topics.list() {
			resp.Topics = append(resp.Topics, b.topicMetadata(t, r))
		}
		return resp
	}
	autoCreate := b.cfg.AutoCreateTopics && (r.Version < 4 || r.AllowAutoTopicCreation)
	for _, rt := range r.Topics {
		var t *topic
		var err error
		switch {
		case rt.Topic == nil && rt.TopicID == [16]byte{}:
			err = fmt.Errorf("%w: neither topic name nor ID given", ErrInvalidRequest)
		case rt.Topic == nil:
			if t = b.topics.getID(rt.TopicID); t == nil {
				err = ErrUnknownTopicID
			}
		default:
			t = b.topics.get(*rt.Topic)
			if t == nil {
				err = validTopicName(*rt.Topic)
				if err == nil {
					err = ErrUnknownTopic
				}
			}
			if t == nil && err == ErrUnknownTopic && autoCreate {
				t, err = b.createTopic(*rt.Topic, -1, -1, nil, false)
				if errors.Is(err, ErrTopicExists) {
					t, err = b.topics.get(*rt.Topic), nil
				} else if err == nil {
					// Answer with the new partitions' leaders, so that
					// the client can produce at once.
					b.awaitLeaders(t.id, time.Now().Add(autoCreateLeaderWait))
					if nt := b.topics.getID(t.id); nt != nil {
						t = nt
					}
				}
			}
		}
		if err != nil || t == nil {
			mt := kmsg.NewMetadataResponseTopic()
			mt.Topic, mt.TopicID = rt.Topic, rt.TopicID
			mt.ErrorCode = errorCode(err)
			if mt.ErrorCode == 0 {
				mt.ErrorCode = kerr.UnknownTopicOrPartition.Code
			}
			mt.AuthorizedOperations = math.MinInt32
			resp.Topics = append(resp.Topics, mt)
			continue
		}
		resp.Topics = append(resp.Topics, b.topicMetadata(t, r))
	}
	return resp
}

// autoCreateLeaderWait bounds how long a Metadata request that creates a
// topic waits for the new partitions' leaders.
const autoCreateLeaderWait = 2 * time.Second

func (b *Broker) brokerEntry() kmsg.MetadataResponseBroker {
	mb := kmsg.NewMetadataResponseBroker()
	mb.NodeID, mb.Host, mb.Port = b.cfg.NodeID, b.advHost, b.advPort
	return mb
}

func (b *Broker) topicMetadata(t *topic, r *kmsg.MetadataRequest) kmsg.MetadataResponseTopic {
	mt := kmsg.NewMetadataResponseTopic()
	name := t.name
	mt.Topic, mt.TopicID, mt.IsInternal = &name, t.id, t.internal
	mt.AuthorizedOperations = math.MinInt32
	if r.IncludeTopicAuthorizedOperations {
		mt.AuthorizedOperations = allTopicOperations
	}
	mt.Partitions = make([]kmsg.MetadataResponseTopicPartition, len(t.parts))
	for i := range t.parts {
		mp := &mt.Partitions[i]
		mp.Default()
		mp.Partition = int32(i)
		mp.OfflineReplicas = []int32{}
		// The leader last reported (by its Raft group, or by this broker
		// for its local logs); until one has, clients are told to wait
		// (LEADER_NOT_AVAILABLE).
		mp.Replicas = t.assign[i]
		l := b.currentLeader(t, i)
		mp.Leader, mp.LeaderEpoch = l.Leader, l.Epoch
		if mp.Leader < 0 {
			mp.ErrorCode = kerr.LeaderNotAvailable.Code
		}
		mp.ISR, mp.OfflineReplicas = b.replicaStatus(mp.Replicas, l)
	}
	return mt
}

// currentLeader is partition i's leader as the metadata records it, or
// this broker when its replica leads in a newer epoch than recorded: a
// broker cut off from the metadata leader (a bridge) leads partitions the
// metadata cannot hear of until the cut heals, and the clients that ask it
// learn of them all the same. Clients keep the newest epoch they are told
// of (KIP-320), so older answers of other brokers do not undo it.
func (b *Broker) currentLeader(t *topic, i int) cluster.Leader {
	l := t.leaders[i]
	if rp, ok := t.parts[i].(partition.Replica); ok {
		if epoch, ok := rp.Leading(); ok && epoch > l.Epoch {
			l.Leader, l.Epoch, l.CatchingUp = b.cfg.NodeID, epoch, nil
		}
	}
	return l
}

func (b *Broker) describeClusterAPI() kproto.API {
	return kproto.API{Key: kmsg.DescribeCluster.Int16(), MinVersion: 0, MaxVersion: 2, Handle: handle(b.describeCluster)}
}

func (b *Broker) describeCluster(_ context.Context, _ *kproto.Request, r *kmsg.DescribeClusterRequest) kmsg.Response {
	resp := r.ResponseKind().(*kmsg.DescribeClusterResponse)
	resp.EndpointType = 1
	if r.Version >= 1 && r.EndpointType != 1 {
		resp.ErrorCode = kerr.MismatchedEndpointType.Code
		resp.ErrorMessage = errorMessage(fmt.Errorf("this broker's listener only serves endpoint type 1 (brokers), not %d", r.EndpointType))
		return resp
	}
	resp.ClusterID = b.currentClusterID()
	resp.ControllerID = b.controllerID()
	resp.ClusterAuthorizedOperations = math.MinInt32
	if r.IncludeClusterAuthorizedOperations {
		resp.ClusterAuthorizedOperations = allClusterOperations
	}
	for _, mb := range b.metadataBrokers(nil) {
		db := kmsg.NewDescribeClusterResponseBroker()
		db.NodeID, db.Host, db.Port = mb.NodeID, mb.Host, mb.Port
		resp.Brokers = append(resp.Brokers, db)
	}
	return resp
}
