package broker

import (
	"context"
	"fmt"
	"net"

	"github.com/pubg1/pubg1/coordinator"
	"github.com/pubg1/pubg1/kproto"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Consumer groups: the coordinator keeps them in the internal topic
// __consumer_offsets, which the broker creates at startup. The handlers of
// the group APIs are in group_*.go.

// groupConfig is the coordinator's part of the broker configuration.
func (c *Config) groupConfig() coordinator.Config {
	gc := coordinator.DefaultConfig()
	gc.Partitions = c.OffsetsTopicPartitions
	gc.MinSessionTimeout, gc.MaxSessionTimeout = c.GroupMinSessionTimeout, c.GroupMaxSessionTimeout
	gc.InitialRebalanceDelay = c.GroupInitialRebalanceDelay
	gc.OffsetsRetention, gc.RetentionCheckInterval = c.OffsetsRetention, c.OffsetsRetentionCheckInterval
	return gc
}

// initGroups creates the coordinator. The cluster layer creates
// __consumer_offsets (initCluster) and hands the leadership of its
// partitions to the coordinator (Elect, Resign).
func (b *Broker) initGroups() error {
	gc := b.cfg.groupConfig()
	gc.Decompressor = b.decompressor
	c, err := coordinator.New(gc, b.log.With().Str("component", "coordinator").Logger())
	if err != nil {
		return err
	}
	b.groups = c
	return nil
}

func (b *Broker) findCoordinatorAPI() kproto.API {
	return kproto.API{Key: kmsg.FindCoordinator.Int16(), MinVersion: 0, MaxVersion: 6, Handle: handle(b.findCoordinator)}
}

// Coordinator key types of FindCoordinator.
const (
	coordinatorGroup       = 0
	coordinatorTransaction = 1
	coordinatorShare       = 2
)

// findCoordinator answers with the leader of each group's offsets partition.
func (b *Broker) findCoordinator(_ context.Context, _ *kproto.Request, r *kmsg.FindCoordinatorRequest) kmsg.Response {
	resp := r.ResponseKind().(*kmsg.FindCoordinatorResponse)
	if r.Version < 4 {
		resp.NodeID, resp.Host, resp.Port, resp.ErrorCode, resp.ErrorMessage = b.coordinatorFor(r.CoordinatorType, r.CoordinatorKey)
		return resp
	}
	for _, key := range r.CoordinatorKeys {
		c := kmsg.NewFindCoordinatorResponseCoordinator()
		c.Key = key
		c.NodeID, c.Host, c.Port, c.ErrorCode, c.ErrorMessage = b.coordinatorFor(r.CoordinatorType, key)
		resp.Coordinators = append(resp.Coordinators, c)
	}
	return resp
}

// coordinatorFor is the broker coordinating key, or the error saying why
// there is none.
func (b *Broker) coordinatorFor(keyType int8, key string) (node int32, host string, port int32, code int16, msg *string) {
	var err error
	switch keyType {
	case coordinatorGroup:
		mb, err := b.groupCoordinator(key)
		if err == nil {
			return mb.NodeID, mb.Host, mb.Port, 0, nil
		}
		return -1, "", -1, errorCode(err), errorMessage(err)
	case coordinatorTransaction:
		if key == "" {
			err = fmt.Errorf("%w: empty transactional ID", ErrInvalidRequest)
			break
		}
		mb, err := b.txnCoordinator(key)
		if err == nil {
			return mb.NodeID, mb.Host, mb.Port, 0, nil
		}
		return -1, "", -1, errorCode(err), errorMessage(err)
	case coordinatorShare:
		err = fmt.Errorf("%w: share groups are not supported", kerr.CoordinatorNotAvailable)
	default:
		err = fmt.Errorf("%w: unknown coordinator key type %d", ErrInvalidRequest, keyType)
	}
	return -1, "", -1, errorCode(err), errorMessage(err)
}

// groupCoordinator is the broker leading the offsets partition of group.
func (b *Broker) groupCoordinator(group string) (kmsg.MetadataResponseBroker, error) {
	t := b.topics.get(coordinator.OffsetsTopic)
	if t == nil || len(t.parts) == 0 {
		return kmsg.MetadataResponseBroker{}, fmt.Errorf("%w: %s is not ready", coordinator.ErrCoordinatorNotAvailable, coordinator.OffsetsTopic)
	}
	return b.internalLeader(coordinator.OffsetsTopic, coordinator.PartitionFor(group, int32(len(t.parts))))
}

// internalLeader is the broker leading partition p of an internal topic,
// the coordinator of what it holds.
func (b *Broker) internalLeader(name string, p int32) (kmsg.MetadataResponseBroker, error) {
	t := b.topics.get(name)
	if t == nil || len(t.leaders) != len(t.parts) || int(p) >= len(t.parts) {
		return kmsg.MetadataResponseBroker{}, fmt.Errorf("%w: %s is not ready", coordinator.ErrCoordinatorNotAvailable, name)
	}
	// A fenced coordinator is not offered: COORDINATOR_NOT_AVAILABLE makes
	// clients retry until its partition has a live leader.
	leader := t.leaders[p].Leader
	for _, mb := range b.metadataBrokers(nil) {
		if leader >= 0 && mb.NodeID == leader {
			return mb, nil
		}
	}
	return kmsg.MetadataResponseBroker{}, fmt.Errorf("%w: %s-%d has no leader", coordinator.ErrCoordinatorNotAvailable, name, p)
}

// clientHost is a client's address as Kafka shows it in groups: "/" and
// the IP address.
func clientHost(req *kproto.Request) string {
	if req.Conn == nil {
		return ""
	}
	host, _, err := net.SplitHostPort(req.Conn.RemoteAddr)
	if err != nil {
		host = req.Conn.RemoteAddr
	}
	return "/" + host
}

// clientID is the request header's client ID, "" when null.
func clientID(req *kproto.Request) string {
	if req.ClientID == nil {
		return ""
	}
	return *req.ClientID
}
