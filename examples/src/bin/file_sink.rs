//! A buffered file sink, the Firehose delivery pattern to local files: each shard's records
//! are buffered and written as one file when the buffer reaches a size or an age, and the
//! shard is checkpointed at the file's last record only once the file is written. A crash
//! then delivers again at most the records of unwritten buffers; nothing is skipped.
//!
//! ```text
//!  process_records ─▶ Buffer (per shard) ─ ≥ MAX_BYTES ─┐
//!  timer (every second) ───────────────── ≥ MAX_AGE ───┼─▶ write <dir>/<shard>-<first seq>.jsonl
//!  shard_ended / shutdown_requested ─────── always ─────┘      (temp file, then rename)
//!                                                            ─▶ checkpoint_at(last record)
//!  lease_lost ─▶ buffer dropped (the next owner reads those records again)
//! ```
//!
//! Run: `cargo run -p kinesis-examples --bin file_sink -- [DIR]` (default: a new temp
//! directory; embedded stack, or `AWS_ENDPOINT_URL_*`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use kinesis_consumer::*;
use kinesis_emulators::LocalStack;
use kinesis_producer::{Producer, ProducerRecord};
use tokio::sync::Mutex;

const MAX_BYTES: usize = 256 * 1024;
const MAX_AGE: Duration = Duration::from_secs(2);
const RECORDS: usize = 20_000;

/// One shard's unwritten records: JSON lines, and where they end.
#[derive(Debug, Default)]
struct Buffer {
    lines: Vec<u8>,
    first: Option<(String, Instant)>,
    last: Option<(String, u64)>,
    checkpointer: Option<Checkpointer>,
}

impl Buffer {
    /// Writes the buffer as one file and checkpoints at its last record, if it has any.
    /// A file that cannot be written keeps the buffer (tried again at the next trigger);
    /// a re-read after a crash writes the same records to the same file name.
    async fn flush(&mut self, dir: &std::path::Path, shard: &str) {
        let (Some((first, _)), Some((seq, sub)), Some(cp)) =
            (&self.first, self.last.clone(), self.checkpointer.clone())
        else {
            return;
        };
        let path = dir.join(format!("{shard}-{first}.jsonl"));
        let temp = path.with_extension("tmp");
        let written = async {
            tokio::fs::write(&temp, &self.lines).await?;
            tokio::fs::rename(&temp, &path).await
        };
        if let Err(e) = written.await {
            eprintln!("cannot write {}: {e}; kept, tried again", path.display());
            return;
        }
        *self = Buffer {
            checkpointer: Some(cp.clone()),
            ..Buffer::default()
        };
        if let Err(e) = cp.checkpoint_at(&seq, sub).await {
            eprintln!("{shard}: checkpoint after {} failed: {e}", path.display());
        }
    }
}

#[derive(Debug)]
struct FileSink {
    dir: PathBuf,
    shard: String,
    buffer: Arc<Mutex<Buffer>>,
    timer: Option<tokio::task::JoinHandle<()>>,
}

impl FileSink {
    fn stop_timer(&mut self) {
        if let Some(timer) = self.timer.take() {
            timer.abort();
        }
    }
}

impl Drop for FileSink {
    fn drop(&mut self) {
        self.stop_timer();
    }
}

#[async_trait]
impl RecordProcessor for FileSink {
    async fn initialize(&mut self, input: InitializationInput) {
        self.shard = input.shard_id;
        let (buffer, dir, shard) = (self.buffer.clone(), self.dir.clone(), self.shard.clone());
        self.timer = Some(tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let mut b = buffer.lock().await;
                if b.first
                    .as_ref()
                    .is_some_and(|(_, at)| at.elapsed() >= MAX_AGE)
                {
                    b.flush(&dir, &shard).await;
                }
            }
        }));
    }
    async fn process_records(&mut self, input: ProcessRecordsInput) {
        let mut b = self.buffer.lock().await;
        b.checkpointer = Some(input.checkpointer.clone());
        for r in &input.records {
            b.first
                .get_or_insert_with(|| (r.sequence_number.clone(), Instant::now()));
            b.last = Some((r.sequence_number.clone(), r.sub_sequence_number));
            let line = format!(
                "{{\"key\":{:?},\"data\":{:?}}}\n",
                r.partition_key.to_string(),
                String::from_utf8_lossy(&r.data)
            );
            b.lines.extend_from_slice(line.as_bytes());
        }
        if b.lines.len() >= MAX_BYTES {
            b.flush(&self.dir, &self.shard).await;
        }
    }
    async fn lease_lost(&mut self, _: LeaseLostInput) {
        self.stop_timer();
        *self.buffer.lock().await = Buffer::default();
    }
    async fn shard_ended(&mut self, input: ShardEndedInput) {
        self.stop_timer();
        self.buffer.lock().await.flush(&self.dir, &self.shard).await;
        input.checkpointer.checkpoint().await.ok(); // SHARD_END: the children may start
    }
    async fn shutdown_requested(&mut self, _: ShutdownRequestedInput) {
        self.stop_timer();
        self.buffer.lock().await.flush(&self.dir, &self.shard).await;
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = match std::env::args().nth(1) {
        Some(d) => PathBuf::from(d),
        None => std::env::temp_dir().join(LocalStack::unique_name("file-sink")),
    };
    tokio::fs::create_dir_all(&dir).await?;
    let stack = LocalStack::builder().start_async().await?;
    let stream = stack.create_stream("deliveries", 2).await?;
    let producer = Producer::builder(stack.kinesis_client()).build()?;
    for i in 0..RECORDS {
        drop(
            producer
                .put(ProducerRecord::new(
                    &stream,
                    format!("k{}", i % 31),
                    i.to_string(),
                ))
                .await?,
        );
    }
    producer.shutdown().await;

    let sink_dir = dir.clone();
    let scheduler = Scheduler::builder("file-sink-example", &stream, move |_: &str| {
        Box::new(FileSink {
            dir: sink_dir.clone(),
            shard: String::new(),
            buffer: Default::default(),
            timer: None,
        }) as Box<dyn RecordProcessor>
    })
    .with_clients(stack.kinesis_client(), stack.dynamodb_client())
    .with_initial_position(InitialPosition::TrimHorizon)
    .build()?;
    let run = tokio::spawn({
        let scheduler = scheduler.clone();
        async move { scheduler.run().await }
    });
    // Wait until every record is in a file (lines counted across the files written).
    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut files, mut lines) = (0, 0);
    while lines < RECORDS && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        (files, lines) = (0, 0);
        let mut entries = tokio::fs::read_dir(&dir).await?;
        while let Some(entry) = entries.next_entry().await? {
            if entry.path().extension().is_some_and(|e| e == "jsonl") {
                files += 1;
                lines += tokio::fs::read(entry.path())
                    .await?
                    .iter()
                    .filter(|b| **b == b'\n')
                    .count();
            }
        }
    }
    scheduler.graceful_shutdown().await;
    run.await??;
    println!(
        "{lines} of {RECORDS} records in {files} files under {}",
        dir.display()
    );
    if lines < RECORDS {
        return Err("not every record was written within a minute".into());
    }
    Ok(())
}
