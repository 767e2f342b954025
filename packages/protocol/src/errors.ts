// Error codes a client can receive, from spec §3: TIW's own codes and the
// TencentCloud API 3.0 common codes. Clients match on `Code`; the texts here are
// our default messages (the real service's texts are undocumented).

/** TIW-specific codes (tencentcloud-sdk-go tiw/v20190919/errors.go). */
export const TIW_ERRORS = {
  AuthFailure: 'CAM signature or authentication error.',
  FailedOperation: 'The operation failed.',
  'FailedOperation.Record': 'The recording failed; the message says why.',
  'FailedOperation.WhiteboardPush': 'The whiteboard push failed.',
  InternalError: 'Internal error.',
  InvalidParameter: 'A parameter is invalid.',
  'InvalidParameter.BodyParameterTypeUnmatched': 'A parameter has the wrong type.',
  'InvalidParameter.CallbackAddressFormatError': 'The callback address is not an http(s) URL.',
  'InvalidParameter.InvalidExtra': 'The requested extra feature (Extras) does not exist.',
  'InvalidParameter.InvalidTaskType': 'The task type is not supported.',
  'InvalidParameter.RecordParameter': 'The real-time recording parameters are invalid.',
  'InvalidParameter.SdkAppIdNotFound': 'SdkAppId is missing, unknown or malformed.',
  'InvalidParameter.TaskNotFound': 'The task does not exist.',
  'InvalidParameter.UnmarshalJSONBodyFail': 'The request body is not valid JSON.',
  'LimitExceeded.TaskConcurrency': 'Too many concurrent tasks for this application.',
  RequestLimitExceeded: 'Too many requests.',
  'ResourceInUse.RecordUserId': 'The RecordUserId is in use by another recording task.',
  ResourceUnavailable: 'The resource is unavailable.',
  'ResourceUnavailable.InterfaceUnAuthorized': 'This API is not authorized for the account.',
  'ResourceUnavailable.NotRegistered': 'The service is not activated for this application.',
  'ResourceUnavailable.ServiceExpired': 'The service has expired for this application.',
  UnauthorizedOperation: 'Unauthorized operation.',
  'UnauthorizedOperation.SdkAppId':
    'The SdkAppId does not exist or does not belong to the calling credentials.',
  UnknownParameter: 'Unknown parameter.',
  UnsupportedOperation: 'The operation is not supported.',
  'UnsupportedOperation.InvalidTaskStatus': 'The task cannot do this in its current status.',
  'UnsupportedOperation.TaskHasAlreadyStopped': 'The task has already stopped.',
} as const

/** TencentCloud API 3.0 common codes, shared by every product. */
export const COMMON_ERRORS = {
  ActionOffline: 'This API has been taken offline.',
  'AuthFailure.InvalidAuthorization': 'The Authorization header is malformed.',
  'AuthFailure.InvalidSecretId': 'The SecretId is not an API key.',
  'AuthFailure.MFAFailure': 'MFA check failed.',
  'AuthFailure.SecretIdNotFound': 'The SecretId does not exist or is disabled.',
  'AuthFailure.SignatureExpire':
    'The request timestamp differs from server time by more than 5 minutes.',
  'AuthFailure.SignatureFailure':
    'The provided credentials could not be validated. Please check your signature is correct.',
  'AuthFailure.TokenFailure': 'The token is invalid.',
  'AuthFailure.UnauthorizedOperation': 'The request is not authorized.',
  DryRunOperation: 'The request would have succeeded (dry run).',
  FailedOperation: 'The operation failed.',
  InternalError: 'Internal error.',
  InvalidAction: 'The action does not exist.',
  InvalidParameter: 'A parameter has a wrong format or type.',
  InvalidParameterValue: 'A parameter has an invalid value.',
  InvalidRequest: 'The multipart request body is malformed.',
  IpInBlacklist: 'The IP address is on the blacklist.',
  IpNotInWhitelist: 'The IP address is not on the whitelist.',
  LimitExceeded: 'A quota limit was exceeded.',
  MissingParameter: 'A required parameter is missing.',
  NoSuchProduct: 'The product does not exist.',
  NoSuchVersion: 'The API version does not exist.',
  RequestLimitExceeded: 'Too many requests.',
  'RequestLimitExceeded.GlobalRegionUinLimitExceeded': 'Too many requests for this account.',
  'RequestLimitExceeded.IPLimitExceeded': 'Too many requests from this IP address.',
  'RequestLimitExceeded.UinLimitExceeded': 'Too many requests for this account.',
  RequestSizeLimitExceeded: 'The request body is too large.',
  ResourceInUse: 'The resource is in use.',
  ResourceInsufficient: 'Insufficient resources.',
  ResourceNotFound: 'The resource does not exist.',
  ResourceUnavailable: 'The resource is unavailable.',
  ResponseSizeLimitExceeded: 'The response is too large.',
  ServiceUnavailable: 'The service is temporarily unavailable.',
  UnauthorizedOperation: 'Unauthorized operation.',
  UnknownParameter: 'Unknown parameter.',
  UnsupportedOperation: 'The operation is not supported.',
  UnsupportedProtocol: 'The HTTP method or protocol is not supported.',
  UnsupportedRegion: 'The region is not supported.',
} as const

export type TiwErrorCode = keyof typeof TIW_ERRORS
export type CommonErrorCode = keyof typeof COMMON_ERRORS
export type ErrorCode = TiwErrorCode | CommonErrorCode

/** Every known code with its meaning. */
export const ERROR_CODES: Readonly<Record<ErrorCode, string>> = { ...COMMON_ERRORS, ...TIW_ERRORS }

export function isErrorCode(code: string): code is ErrorCode {
  return Object.hasOwn(ERROR_CODES, code)
}

/** An API error as it travels in `{"Response":{"Error":{"Code","Message"}}}`. */
export class ApiError extends Error {
  override name = 'ApiError'
  readonly code: ErrorCode

  constructor(code: ErrorCode, message: string = ERROR_CODES[code]) {
    super(message)
    this.code = code
  }

  toJSON(): { Code: ErrorCode; Message: string } {
    return { Code: this.code, Message: this.message }
  }
}
