package broker

import (
	"context"
	"time"

	"github.com/pubg1/pubg1/coordinator"
	"github.com/pubg1/pubg1/kproto"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// The membership APIs of the classic group protocol: JoinGroup, SyncGroup,
// Heartbeat and LeaveGroup. JoinGroup and SyncGroup are answered when the
// rebalance gets there, so their handlers respond from the coordinator.

func millis(ms int32) time.Duration { return time.Duration(ms) * time.Millisecond }

func (b *Broker) joinGroupAPI() kproto.API {
	return kproto.API{Key: kmsg.JoinGroup.Int16(), MinVersion: 0, MaxVersion: 9, Handle: b.joinGroup}
}

func (b *Broker) joinGroup(_ context.Context, req *kproto.Request, respond func(kmsg.Response)) {
	r := req.Msg.(*kmsg.JoinGroupRequest)
	rebalance := r.RebalanceTimeoutMillis
	if r.Version == 0 {
		rebalance = r.SessionTimeoutMillis // v0 has one timeout for both
	}
	jr := coordinator.JoinRequest{
		Group:                 r.Group,
		MemberID:              r.MemberID,
		InstanceID:            r.InstanceID,
		ClientID:              clientID(req),
		ClientHost:            clientHost(req),
		SessionTimeout:        millis(r.SessionTimeoutMillis),
		RebalanceTimeout:      millis(rebalance),
		ProtocolType:          r.ProtocolType,
		RequireKnownMemberID:  r.Version >= 4 && r.InstanceID == nil,
		SkipAssignmentAllowed: r.Version >= 9,
	}
	if r.Reason != nil {
		jr.Reason = *r.Reason
	}
	for _, p := range r.Protocols {
		jr.Protocols = append(jr.Protocols, coordinator.Protocol{Name: p.Name, Metadata: p.Metadata})
	}
	b.groups.JoinGroup(jr, func(res coordinator.JoinResult) {
		resp := r.ResponseKind().(*kmsg.JoinGroupResponse)
		resp.ErrorCode = errorCode(res.Err)
		resp.Generation = res.Generation
		resp.ProtocolType, resp.Protocol = res.ProtocolType, res.Protocol
		resp.LeaderID, resp.MemberID, resp.SkipAssignment = res.Leader, res.MemberID, res.SkipAssignment
		for _, m := range res.Members {
			rm := kmsg.NewJoinGroupResponseMember()
			rm.MemberID, rm.InstanceID, rm.ProtocolMetadata = m.MemberID, m.InstanceID, m.Metadata
			resp.Members = append(resp.Members, rm)
		}
		respond(resp)
	})
}

func (b *Broker) syncGroupAPI() kproto.API {
	return kproto.API{Key: kmsg.SyncGroup.Int16(), MinVersion: 0, MaxVersion: 5, Handle: b.syncGroup}
}

func (b *Broker) syncGroup(_ context.Context, req *kproto.Request, respond func(kmsg.Response)) {
	r := req.Msg.(*kmsg.SyncGroupRequest)
	answer := func(res coordinator.SyncResult) {
		resp := r.ResponseKind().(*kmsg.SyncGroupResponse)
		resp.ErrorCode = errorCode(res.Err)
		resp.ProtocolType, resp.Protocol = res.ProtocolType, res.Protocol
		resp.MemberAssignment = res.Assignment
		if resp.MemberAssignment == nil {
			resp.MemberAssignment = []byte{}
		}
		respond(resp)
	}
	if r.Version >= 5 && (r.ProtocolType == nil || r.Protocol == nil) {
		// From v5 on both must be given.
		answer(coordinator.SyncResult{Err: coordinator.ErrInconsistentProtocol})
		return
	}
	sr := coordinator.SyncRequest{
		Group:        r.Group,
		Generation:   r.Generation,
		MemberID:     r.MemberID,
		InstanceID:   r.InstanceID,
		ProtocolType: r.ProtocolType,
		Protocol:     r.Protocol,
		Assignments:  make(map[string][]byte, len(r.GroupAssignment)),
	}
	for _, a := range r.GroupAssignment {
		sr.Assignments[a.MemberID] = a.MemberAssignment
	}
	b.groups.SyncGroup(sr, answer)
}

func (b *Broker) heartbeatAPI() kproto.API {
	return kproto.API{Key: kmsg.Heartbeat.Int16(), MinVersion: 0, MaxVersion: 4, Handle: b.heartbeat}
}

func (b *Broker) heartbeat(_ context.Context, req *kproto.Request, respond func(kmsg.Response)) {
	r := req.Msg.(*kmsg.HeartbeatRequest)
	hr := coordinator.HeartbeatRequest{Group: r.Group, Generation: r.Generation, MemberID: r.MemberID, InstanceID: r.InstanceID}
	b.groups.Heartbeat(hr, func(err error) {
		resp := r.ResponseKind().(*kmsg.HeartbeatResponse)
		resp.ErrorCode = errorCode(err)
		respond(resp)
	})
}

func (b *Broker) leaveGroupAPI() kproto.API {
	return kproto.API{Key: kmsg.LeaveGroup.Int16(), MinVersion: 0, MaxVersion: 5, Handle: b.leaveGroup}
}

// leaveGroup removes members; before v3 a request names one member and the
// answer carries its error at the top level.
func (b *Broker) leaveGroup(_ context.Context, req *kproto.Request, respond func(kmsg.Response)) {
	r := req.Msg.(*kmsg.LeaveGroupRequest)
	var leaving []coordinator.MemberIdentity
	if r.Version < 3 {
		leaving = []coordinator.MemberIdentity{{MemberID: r.MemberID}}
	}
	for _, m := range r.Members {
		mi := coordinator.MemberIdentity{MemberID: m.MemberID, InstanceID: m.InstanceID}
		if m.Reason != nil {
			mi.Reason = *m.Reason
		}
		leaving = append(leaving, mi)
	}
	b.groups.LeaveGroup(r.Group, leaving, func(err error, memberErrs []error) {
		resp := r.ResponseKind().(*kmsg.LeaveGroupResponse)
		resp.ErrorCode = errorCode(err)
		if r.Version < 3 {
			for _, merr := range memberErrs {
				if resp.ErrorCode == 0 {
					resp.ErrorCode = errorCode(merr)
				}
			}
			respond(resp)
			return
		}
		if err == nil {
			for i, merr := range memberErrs {
				rm := kmsg.NewLeaveGroupResponseMember()
				rm.MemberID, rm.InstanceID = leaving[i].MemberID, leaving[i].InstanceID
				rm.ErrorCode = errorCode(merr)
				resp.Members = append(resp.Members, rm)
			}
		}
		respond(resp)
	})
}
