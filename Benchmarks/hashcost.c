// What one hash costs at the cost limits of Sources/Auth/CostLimits.swift (issue 9, finding 6).
// Single thread, libxcrypt and OpenSSL as pop3d uses them:
//   gcc -O2 -o /tmp/hashcost Benchmarks/hashcost.c -lcrypt -lcrypto && /tmp/hashcost
// Modes: all (default), sha, bcrypt [maxcost], y (yescrypt/scrypt/BSDi), pbkdf2, len.
#include <crypt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <openssl/evp.h>
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec/1e9;}
static double timeit(const char *pw, const char *setting){
  struct crypt_data d; memset(&d,0,sizeof d);
  double t=now(); const char *r=crypt_rn(pw,setting,&d,sizeof d); double e=now()-t;
  if(!r||r[0]=='*') printf("FAIL %s\n",setting);
  return e;
}
static int len_main(void);
int main(int argc,char**argv){
  char pw[600]; memset(pw,'a',sizeof pw); pw[8]=0;
  char set[CRYPT_GENSALT_OUTPUT_SIZE];
  const char *mode = argc>1?argv[1]:"all";
  if(!strcmp(mode,"all")||!strcmp(mode,"sha")){
    for (long r=5000;r<=1000000;r*=10){ snprintf(set,sizeof set,"$6$rounds=%ld$abcdefghijklmnop$",r); printf("sha512 rounds=%ld %.4f s\n",r,timeit(pw,set)); }
    snprintf(set,sizeof set,"$6$rounds=%d$abcdefghijklmnop$",656000); printf("sha512 rounds=656000 %.4f s\n",timeit(pw,set));
    snprintf(set,sizeof set,"$5$rounds=%d$abcdefghijklmnop$",1000000); printf("sha256 rounds=1000000 %.4f s\n",timeit(pw,set));
    for (int len=8; len<=512; len*=2){ char p2[600]; memset(p2,'a',len); p2[len]=0; if(len==512)p2[511]=0;
      printf("sha512 5000 pwlen=%d %.4f s\n",(int)strlen(p2),timeit(p2,"$6$abcdefghijklmnop$")); }
  }
  if(!strcmp(mode,"all")||!strcmp(mode,"bcrypt")){
    int maxc = argc>2?atoi(argv[2]):15;
    for(int c=10;c<=maxc;c++){ crypt_gensalt_rn("$2b$",c,NULL,0,set,sizeof set); printf("bcrypt cost=%d %.4f s\n",c,timeit(pw,set)); }
  }
  if(!strcmp(mode,"all")||!strcmp(mode,"y")){
    for(int c=1;c<=11;c++){ if(!crypt_gensalt_rn("$y$",c,NULL,0,set,sizeof set)){printf("no gensalt y %d\n",c);continue;} printf("yescrypt count=%d %s %.4f s\n",c,set,timeit(pw,set)); }
    for(int c=0;c<=11;c++){ if(!crypt_gensalt_rn("$7$",c,NULL,0,set,sizeof set)){printf("no gensalt 7 %d\n",c);continue;} printf("scrypt count=%d %s %.4f s\n",c,set,timeit(pw,set)); }
    for(int c=0;c<=11;c++){ if(!crypt_gensalt_rn("$gy$",c,NULL,0,set,sizeof set)){printf("no gensalt gy %d\n",c);continue;} printf("gy count=%d %s\n",c,set); }
    for(unsigned long c=0;c<=0xffffff;c=c?c*16:1){ if(!crypt_gensalt_rn("_",c,NULL,0,set,sizeof set)){printf("no gensalt _ %lu\n",c);continue;} printf("bsdi count=%lu %s %.4f\n",c,set,timeit(pw,set)); }
  }
  if(!strcmp(mode,"all")||!strcmp(mode,"pbkdf2")){
    unsigned char out[32];
    for(int it=4096; it<=10000000; it = it==4096?100000: it*10){ double t=now(); PKCS5_PBKDF2_HMAC(pw,8,(unsigned char*)"saltsaltsaltsalt",16,it,EVP_sha256(),32,out); printf("pbkdf2-sha256 iter=%d %.4f s\n",it,now()-t);}
  }
  if(!strcmp(mode,"all")||!strcmp(mode,"len")) len_main();
  return 0;
}

static int len_main(void){ int lens[]={8,64,128,248,256,511}; struct crypt_data d;
 for(int k=0;k<6;k++){ char p[600]; memset(p,'a',lens[k]); p[lens[k]]=0; double best=1e9;
  for(int r=0;r<15;r++){ memset(&d,0,sizeof d); double t=now(); crypt_rn(p,"$6$abcdefghijklmnop$",&d,sizeof d); double e=now()-t; if(e<best)best=e;}
  printf("sha512-crypt 5000 rounds, %3d octets: min of 15 %.2f ms\n",lens[k],best*1000);} 
 for(int k=0;k<6;k++){ char p[600]; memset(p,'a',lens[k]); p[lens[k]]=0; double best=1e9;
  for(int r=0;r<15;r++){ memset(&d,0,sizeof d); double t=now(); crypt_rn(p,"$1$abcdefgh$",&d,sizeof d); double e=now()-t; if(e<best)best=e;}
  printf("md5-crypt, %3d octets: min of 15 %.3f ms\n",lens[k],best*1000);} return 0; }
