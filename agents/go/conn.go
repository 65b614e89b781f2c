package main

// One gRPC stream (AgentService.Connect): a goroutine reads server messages into the agent loop, and
// another writes the loop's messages in order, so the loop never blocks on the network (HTTP/2 flow
// control holds only the writer; the loop bounds what it queues per run).

import (
	"context"
	"crypto/tls"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	pb "agent-jobs/agent-go/generated/agent/v1"
)

type stream struct {
	id       int
	cancel   context.CancelFunc
	client   pb.AgentService_ConnectClient
	mu       sync.Mutex
	queue    []*pb.AgentMessage
	wake     chan struct{}
	closed   bool
	welcomed bool
	openedAt time.Time
	// helloSentAt renews the lease at Welcome; hbSent the send time of each unanswered Heartbeat.
	helloSentAt time.Time
	hbSeq       uint64
	hbSent      map[uint64]time.Time
	goneAway    bool
	replaced    bool
}

func dial(target serverTarget) (*grpc.ClientConn, error) {
	var creds credentials.TransportCredentials = insecure.NewCredentials()
	if target.TLS {
		creds = credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS12})
	}
	return grpc.NewClient("passthrough:///"+target.Address, grpc.WithTransportCredentials(creds))
}

// openStream starts a stream; its messages and its end arrive on events.
func openStream(conn *grpc.ClientConn, token string, id int, events chan<- event) (*stream, error) {
	ctx, cancel := context.WithCancel(context.Background())
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	client, err := pb.NewAgentServiceClient(conn).Connect(ctx)
	if err != nil {
		cancel()
		return nil, err
	}
	s := &stream{id: id, cancel: cancel, client: client, wake: make(chan struct{}, 1), openedAt: time.Now(), hbSent: map[uint64]time.Time{}}
	go s.writeLoop()
	go func() {
		for {
			msg, err := client.Recv()
			if err != nil {
				events <- event{kind: evStreamEnded, stream: s, err: err}
				return
			}
			events <- event{kind: evServer, stream: s, msg: msg}
		}
	}()
	return s, nil
}

func (s *stream) send(msg *pb.AgentMessage) {
	s.mu.Lock()
	if !s.closed {
		s.queue = append(s.queue, msg)
	}
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// queued is how many messages wait for the network.
func (s *stream) queued() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.queue)
}

func (s *stream) writeLoop() {
	for {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return
		}
		if len(s.queue) == 0 {
			s.mu.Unlock()
			<-s.wake
			continue
		}
		msg := s.queue[0]
		s.queue[0] = nil
		s.queue = s.queue[1:]
		s.mu.Unlock()
		if err := s.client.Send(msg); err != nil {
			// The reader sees the stream's status and reports the end.
			s.mu.Lock()
			s.closed = true
			s.mu.Unlock()
			return
		}
	}
}

// close ends the stream from this side: what is queued is flushed first (bounded), then CloseSend.
func (s *stream) close(wait time.Duration) {
	deadline := time.Now().Add(wait)
	for s.queued() > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	s.client.CloseSend()
	time.AfterFunc(500*time.Millisecond, s.cancel)
}

func (s *stream) abort() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	s.cancel()
}
