/*
 * The consumer of aws-kcl's basic sample (samples/basic_sample/consumer/sample_kcl_app.js
 * in awslabs/amazon-kinesis-client-nodejs), restated for the multilang tests: the npm
 * package ships no samples. Same calls in the same order (initialize; processRecords logs
 * each record and checkpoints at the last sequence number; leaseLost; shardEnded and
 * shutdownRequested checkpoint), logging to standard error instead of a log4js file.
 */
'use strict';

var util = require('util');
var kcl = require('aws-kcl');

function log(message) {
  process.stderr.write(message + '\n');
}

function recordProcessor() {
  var shardId;

  return {
    initialize: function(initializeInput, completeCallback) {
      shardId = initializeInput.shardId;
      completeCallback();
    },

    processRecords: function(processRecordsInput, completeCallback) {
      if (!processRecordsInput || !processRecordsInput.records) {
        completeCallback();
        return;
      }
      var records = processRecordsInput.records;
      var record, data, sequenceNumber, partitionKey;
      for (var i = 0; i < records.length; ++i) {
        record = records[i];
        data = Buffer.from(record.data, 'base64').toString();
        sequenceNumber = record.sequenceNumber;
        partitionKey = record.partitionKey;
        log(util.format('ShardID: %s, Record: %s, SeqenceNumber: %s, PartitionKey:%s',
          shardId, data, sequenceNumber, partitionKey));
      }
      if (!sequenceNumber) {
        completeCallback();
        return;
      }
      processRecordsInput.checkpointer.checkpoint(sequenceNumber, function(err, sequenceNumber) {
        log(util.format('Checkpoint successful. ShardID: %s, SeqenceNumber: %s, Error: %s',
          shardId, sequenceNumber, err));
        completeCallback();
      });
    },

    leaseLost: function(leaseLostInput, completeCallback) {
      log(util.format('Lease was lost for ShardId: %s', shardId));
      completeCallback();
    },

    shardEnded: function(shardEndedInput, completeCallback) {
      log(util.format('ShardId: %s has ended. Will checkpoint now.', shardId));
      shardEndedInput.checkpointer.checkpoint(function(err) {
        completeCallback();
      });
    },

    shutdownRequested: function(shutdownRequestedInput, completeCallback) {
      log(util.format('ShutdownRequested for ShardId: %s', shardId));
      shutdownRequestedInput.checkpointer.checkpoint(function(err) {
        completeCallback();
      });
    }
  };
}

kcl(recordProcessor()).run();
