// The seed's example of each event (for Finished, the successful one), typed.
// fixtures/events/*.json hold the same bodies; a test keeps the two equal.
import type { CallbackOf, EventType } from './events.ts'

export const sampleEvents: { readonly [T in EventType]: CallbackOf<T> } = {
  OnlineRecordStarted: {
    EventData: {
      RecordUserId: 'tic_record_user_1253_01',
      RoomId: 1253,
      TaskId: 'bj0mt2l23osdj300hl30',
    },
    EventType: 'OnlineRecordStarted',
    ExpireTime: 1590046391,
    SdkAppId: 1400000001,
    Sign: 'a2dabb362a9b811c0e26953a6276a41c',
    Timestamp: 1575545412,
  },
  OnlineRecordStopped: {
    EventData: {
      RecordUserId: 'tic_record_user_1253_01',
      RoomId: 1253,
      TaskId: 'bj0mt2l23osdj300hl30',
    },
    EventType: 'OnlineRecordStopped',
    ExpireTime: 1590046391,
    SdkAppId: 1400000001,
    Sign: 'a2dabb362a9b811c0e26953a6276a41c',
    Timestamp: 1575545412,
  },
  OnlineRecordFinished: {
    EventData: {
      TaskId: 'ghucnligqtgtvk2624mb',
      RoomId: 880528,
      GroupId: '880528',
      RecordUserId: 'tic_record_user_880528_test-01',
      FinishReason: 'USER_CALL',
      RecordStartTime: 1568949369,
      RecordStopTime: 1568949392,
      TotalTime: 18317,
      ExceptionCnt: 0,
      OmittedDurations: [],
      VideoInfos: [
        {
          UserId: 'Mac_trtc_04',
          VideoDuration: 17969,
          VideoFormat: 'mp4',
          VideoId: 'dace3518e865e76a9e36712c629822ba',
          VideoPlayTime: 0,
          VideoSize: 593418,
          VideoType: 0,
          VideoUrl:
            'http://online-recording-1259648581.file.myqcloud.com/00sp43mantgtv4r842mb/d124f518e865e76a9e36712c629822ba.mp4',
        },
        {
          UserId: 'tic_mixstream_880528_101',
          VideoDuration: 18205,
          VideoFormat: 'mp4',
          VideoId: '763d1f6b8679c3f17fb118bd37d05c85',
          VideoPlayTime: 3,
          VideoSize: 765545,
          VideoType: 3,
          VideoUrl:
            'http://online-recording-1259648581.file.myqcloud.com/00sp43mantgtv4r842mb/763d1f6b86724f51fb118bd37d05c85.mp4',
        },
        {
          UserId: 'tic_mixstream_880528_3',
          VideoDuration: 18222,
          VideoFormat: 'mp4',
          VideoId: '1b9623df0516dc7318df89f6e7fffc1e',
          VideoPlayTime: 95,
          VideoSize: 402038,
          VideoType: 3,
          VideoUrl:
            'http://online-recording-1259648581.file.myqcloud.com/00sp43mantgtv4r842mb/1b9623df05124f51318df89f6e7fffc1e.mp4',
        },
        {
          UserId: '',
          VideoDuration: 17605,
          VideoFormat: 'mp4',
          VideoId: 'a8152f8faa2cfe621dc965a066a5813c',
          VideoPlayTime: 623,
          VideoSize: 226337,
          VideoType: 2,
          VideoUrl:
            'http://online-recording-1259648581.file.myqcloud.com/00sp43mantgtv4r842mb/a815224f512cfe621dc965a066a5813c.mp4',
        },
      ],
    },
    EventType: 'OnlineRecordFinished',
    ExpireTime: 1590046391,
    SdkAppId: 1400000001,
    Sign: 'a2dabb362a9b811c0e26953a6276a41c',
    Timestamp: 1575545412,
  },
  OnlineRecordLongPauseWarning: {
    EventData: {
      TaskId: 'bj0mt2l23osdj300hl30',
      RoomId: 1253,
      RecordUserId: 'tic_record_user_1253_01',
      PauseTime: 1575545412,
      EstimateStopTime: 1575546412,
    },
    EventType: 'OnlineRecordLongPauseWarning',
    ExpireTime: 1590046391,
    SdkAppId: 1400000001,
    Sign: 'a2dabb362a9b811c0e26953a6276a41c',
    Timestamp: 1575545412,
  },
  OnlineRecordLongPauseForceStopped: {
    EventData: {
      TaskId: 'bj0mt2l23osdj300hl30',
      RoomId: 1253,
      RecordUserId: 'tic_record_user_1253_01',
      PauseTime: 1575545412,
      StopTime: 1575546412,
    },
    EventType: 'OnlineRecordLongPauseForceStopped',
    ExpireTime: 1590046391,
    SdkAppId: 1400000001,
    Sign: 'a2dabb362a9b811c0e26953a6276a41c',
    Timestamp: 1575545412,
  },
}

/** The seed's example of a failed recording. */
export const sampleFailedFinished: CallbackOf<'OnlineRecordFinished'> = {
  EventData: {
    Error: {
      Code: 'FailedOperation.Record',
      Message: 'code: 40001, msg: 2020-05-21 15:20:06, invalid userid\n',
    },
    ExceptionCnt: 0,
    FinishReason: 'EXCEPTION',
    GroupId: '880528',
    OmittedDurations: [],
    RecordStartTime: 0,
    RecordStopTime: 1590045606,
    RecordUserId: 'tic_record_user_880528_test-01',
    RoomId: 880528,
    TaskId: 'ghucnligqtgtvk2624mb',
    TotalTime: 0,
    VideoInfos: [],
  },
  EventType: 'OnlineRecordFinished',
  ExpireTime: 1590046391,
  SdkAppId: 1400000001,
  Sign: 'a2dabb362a9b811c0e26953a6276a41c',
  Timestamp: 1575545412,
}
