package main

import (
	"bytes"
	"math/rand"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "agent-jobs/agent-go/generated/agent/v1"
)

// A stream with no network under it: what the agent sends stays in its queue.
func fakeStream(id int) *stream {
	return &stream{id: id, wake: make(chan struct{}, 1), hbSent: map[uint64]time.Time{}, openedAt: time.Now()}
}

// sent takes what the agent queued on s since the last call.
func sent(s *stream) []*pb.AgentMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.queue
	s.queue = nil
	return out
}

func testAgent(t *testing.T) *agent {
	dir := t.TempDir()
	opts := &options{StateDir: dir, WorkDir: filepath.Join(dir, "work"), Capacity: 1, HeartbeatFallback: time.Second, Name: "test"}
	return newAgent(opts, newUUID(), nil)
}

// finishedRun gives a the run of a successful job whose patch has size bytes (random), with one log
// line not yet sent; it returns the run and its patch.
func finishedRun(t *testing.T, a *agent, size int) (*run, []byte) {
	t.Helper()
	patch := make([]byte, size)
	rand.New(rand.NewSource(int64(size))).Read(patch)
	if err := os.MkdirAll(a.store.dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(a.store.patchFile(jobID, 1), patch, 0o600); err != nil {
		t.Fatal(err)
	}
	change := &pb.RunChange{Branch: "agent-jobs/" + jobID, Pushed: true, BaseCommit: "b", HeadCommit: "h", CommitCount: 1,
		Commits: []*pb.Commit{{Sha: "h", Subject: "s"}}, DiffStat: &pb.DiffStat{FilesChanged: 1}, PatchSize: uint64(size)}
	code := int32(0)
	res := &runResult{Outcome: int32(pb.JobOutcome_JOB_OUTCOME_SUCCEEDED), ExitCode: &code, FinishedAt: time.Now(), LastSeq: 1, Change: &storedChange{change}}
	r := &run{key: runKey(jobID, 1), jobID: jobID, attempt: 1, ctl: &procControl{}, result: res, base: 1, lastSeq: 1,
		lines: []*pb.LogLine{{At: timestamppb.Now(), Stream: pb.LogStream_LOG_STREAM_SYSTEM, Text: "exited with code 0"}}}
	a.runs[r.key] = r
	return r, patch
}

// chunks checks that msgs are PatchChunks of at most 1 MiB, in order from offset, and returns their
// bytes; a JobFinished after them is returned too.
func chunks(t *testing.T, msgs []*pb.AgentMessage, offset uint64) ([]byte, *pb.JobFinished) {
	t.Helper()
	var data []byte
	var finished *pb.JobFinished
	for _, m := range msgs {
		switch p := m.Payload.(type) {
		case *pb.AgentMessage_PatchChunk:
			c := p.PatchChunk
			if finished != nil || c.GetOffset() != offset+uint64(len(data)) || len(c.GetData()) == 0 || len(c.GetData()) > patchChunkBytes ||
				c.GetJobId() != jobID || c.GetAttempt() != 1 {
				t.Fatalf("chunk at %d of %d bytes after %d bytes from %d", c.GetOffset(), len(c.GetData()), len(data), offset)
			}
			data = append(data, c.GetData()...)
		case *pb.AgentMessage_Finished:
			finished = p.Finished
		case *pb.AgentMessage_LogBatch:
			if len(data) > 0 {
				t.Fatalf("a log batch after patch bytes")
			}
		default:
			t.Fatalf("unexpected %T", m.Payload)
		}
	}
	return data, finished
}

func patchAck(stored uint64) *pb.ServerMessage {
	return &pb.ServerMessage{Payload: &pb.ServerMessage_PatchAck{PatchAck: &pb.PatchAck{JobId: jobID, Attempt: 1, StoredBytes: stored}}}
}

const mib = 1 << 20

func TestPatchIsSentInChunksWithinTheWindowThenJobFinished(t *testing.T) {
	a := testAgent(t)
	s := fakeStream(1)
	a.cur, a.maxPatchBytes = s, 64*mib
	r, patch := finishedRun(t, a, 6*mib+mib/2)

	a.flushRun(r)
	msgs := sent(s)
	if _, ok := msgs[0].Payload.(*pb.AgentMessage_LogBatch); !ok {
		t.Fatalf("first %T, want the last log line before the patch", msgs[0].Payload)
	}
	data, finished := chunks(t, msgs[1:], 0)
	if len(data) != 2*mib || finished != nil {
		t.Fatalf("sent %d bytes unacknowledged (finished %v), want the 2 MiB window", len(data), finished != nil)
	}
	a.onServer(s, patchAck(mib))
	more, finished := chunks(t, sent(s), 2*mib)
	if len(more) != mib || finished != nil {
		t.Fatalf("after an ack of 1 MiB: %d more bytes, finished %v", len(more), finished != nil)
	}
	a.onServer(s, patchAck(mib/2)) // acks only move forward
	if msgs := sent(s); len(msgs) != 0 {
		t.Fatalf("an old ack sent %d messages", len(msgs))
	}
	a.onServer(s, patchAck(3*mib))
	further, finished := chunks(t, sent(s), 3*mib)
	if len(further) != 2*mib || finished != nil {
		t.Fatalf("after an ack of 3 MiB: %d more bytes, finished %v", len(further), finished != nil)
	}
	more = append(more, further...)
	a.onServer(s, patchAck(5*mib))
	last, finished := chunks(t, sent(s), 5*mib)
	if finished == nil || len(last) != mib+mib/2 {
		t.Fatalf("last %d bytes, finished %v", len(last), finished)
	}
	if !bytes.Equal(append(append(data, more...), last...), patch) {
		t.Fatal("the chunks are not the patch")
	}
	if !proto.Equal(finished.GetChange(), r.result.Change.RunChange) || finished.GetOutcome() != pb.JobOutcome_JOB_OUTCOME_SUCCEEDED || finished.GetLastSeq() != 1 {
		t.Fatalf("JobFinished %v", finished)
	}

	// The server had stored less than it acked before a gap (say its storage lost some): PatchAck,
	// then PATCH_GAP. The agent resends from there; JobFinished is not repeated (its ack follows).
	a.onServer(s, patchAck(5*mib))
	a.onServer(s, &pb.ServerMessage{Payload: &pb.ServerMessage_Notice{Notice: &pb.Notice{Code: pb.NoticeCode_NOTICE_CODE_PATCH_GAP, JobId: jobID, Attempt: 1}}})
	resent, finished := chunks(t, sent(s), 5*mib)
	if finished != nil || !bytes.Equal(resent, patch[5*mib:]) {
		t.Fatalf("after PATCH_GAP: %d bytes, finished %v", len(resent), finished != nil)
	}

	// A new stream: everything from the last PatchAck again, then JobFinished again.
	s2 := fakeStream(2)
	a.cur, a.opening = nil, s2
	a.onWelcome(s2, &pb.Welcome{MaxPatchBytes: 64 * mib})
	msgs = sent(s2)
	if _, ok := msgs[0].Payload.(*pb.AgentMessage_LogBatch); !ok {
		t.Fatalf("first %T, want the unacknowledged log line", msgs[0].Payload)
	}
	again, finished := chunks(t, msgs[1:], 5*mib)
	if finished == nil || !bytes.Equal(again, patch[5*mib:]) {
		t.Fatalf("after Welcome: %d bytes, finished %v", len(again), finished != nil)
	}
	a.onServer(s2, &pb.ServerMessage{Payload: &pb.ServerMessage_FinishedAck{FinishedAck: &pb.JobFinishedAck{JobId: jobID, Attempt: 1}}})
	if len(a.runs) != 0 {
		t.Fatal("the acknowledged run is still held")
	}
	if _, err := os.Stat(a.store.patchFile(jobID, 1)); !os.IsNotExist(err) {
		t.Fatalf("the patch file outlives its run: %v", err)
	}
}

func TestNoPatchToAServerThatStoresNoneOrNotThatMuch(t *testing.T) {
	for _, max := range []uint64{0, mib - 1} {
		a := testAgent(t)
		s := fakeStream(1)
		a.cur, a.maxPatchBytes = s, max
		r, _ := finishedRun(t, a, mib)
		a.flushRun(r)
		msgs := sent(s)
		if len(msgs) != 2 {
			t.Fatalf("max %d: %d messages, want the log batch and JobFinished", max, len(msgs))
		}
		finished := msgs[1].GetFinished()
		if finished.GetChange().GetPatchSize() != mib {
			t.Fatalf("max %d: JobFinished %v", max, finished)
		}
	}
	// A patch exactly at the limit is sent.
	a := testAgent(t)
	s := fakeStream(1)
	a.cur, a.maxPatchBytes = s, mib
	r, patch := finishedRun(t, a, mib)
	a.flushRun(r)
	data, finished := chunks(t, sent(s)[1:], 0)
	if finished == nil || !bytes.Equal(data, patch) {
		t.Fatal("a patch at the limit was not sent whole")
	}
}

func TestAFailedRunCarriesNoChange(t *testing.T) {
	a := testAgent(t)
	s := fakeStream(1)
	a.cur, a.maxPatchBytes = s, 64*mib
	r, _ := finishedRun(t, a, 100)
	r.result.Outcome = int32(pb.JobOutcome_JOB_OUTCOME_FAILED)
	a.flushRun(r)
	msgs := sent(s)
	if len(msgs) != 2 || msgs[1].GetFinished() == nil || msgs[1].GetFinished().GetChange() != nil {
		t.Fatalf("got %v", msgs)
	}
}

func TestARestartedAgentReportsTheChangeAndResendsThePatch(t *testing.T) {
	a := testAgent(t)
	// Within one window, so the whole patch and the JobFinished go out before any ack.
	r, patch := finishedRun(t, a, 2*mib)
	sp, err := a.store.openSpool(jobID, 1)
	if err != nil {
		t.Fatal(err)
	}
	sp.append(spoolLine{Seq: 1, AtNano: time.Now().UnixNano(), Stream: int32(pb.LogStream_LOG_STREAM_SYSTEM), Text: "exited with code 0"})
	if err := sp.close(); err != nil {
		t.Fatal(err)
	}
	if err := a.store.write(runRecord{JobID: jobID, Attempt: 1, Ended: r.result}); err != nil {
		t.Fatal(err)
	}

	b := newAgent(a.opts, a.agentID, nil)
	b.restore()
	restored := b.runs[runKey(jobID, 1)]
	if restored == nil || !proto.Equal(restored.result.Change.RunChange, r.result.Change.RunChange) {
		t.Fatalf("restored %v", restored)
	}
	s := fakeStream(1)
	b.opening = s
	b.onWelcome(s, &pb.Welcome{MaxPatchBytes: 64 * mib})
	data, finished := chunks(t, sent(s)[1:], 0)
	if finished == nil || !bytes.Equal(data, patch) || !proto.Equal(finished.GetChange(), r.result.Change.RunChange) {
		t.Fatalf("resent %d bytes, finished %v", len(data), finished)
	}

	// Without its patch the run cannot be reported as it was; it is dropped.
	if err := os.Remove(a.store.patchFile(jobID, 1)); err != nil {
		t.Fatal(err)
	}
	c := newAgent(a.opts, a.agentID, nil)
	c.restore()
	if len(c.runs) != 0 {
		t.Fatal("a run restored without its patch")
	}
	if _, err := os.Stat(filepath.Join(a.store.dir, jobID+"-1.json")); !os.IsNotExist(err) {
		t.Fatalf("its record is kept: %v", err)
	}
}
