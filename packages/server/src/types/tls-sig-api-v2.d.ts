// The official UserSig library ships no types; tests use it as an independent check.
declare module 'tls-sig-api-v2' {
  export class Api {
    constructor(sdkappid: number, key: string)
    genUserSig(userid: string, expire: number): string
  }
  const TLSSigAPIv2: { Api: typeof Api }
  export default TLSSigAPIv2
}
